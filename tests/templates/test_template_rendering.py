"""The sandbox, strict placeholders, autoescaping, output caps and the derived text part (no database)."""

from __future__ import annotations

import pytest

from app.templates.rendering import (
    BUILTIN_PLACEHOLDERS,
    MAX_OUTPUT_CHARS,
    TemplateProblem,
    check_source,
    html_to_text,
    render_parts,
)
from app.templates.service import choose_language

DATA = {**BUILTIN_PLACEHOLDERS, "document": "<ER-1042 & co>", "items": ["a", "b"]}


class TestCheckSource:
    @pytest.mark.parametrize(
        "source",
        [
            "{{ ''.__class__.__mro__ }}",
            "{{ document.__class__ }}",
            "{{ document['__class__'] }}",
            # unreached, still refused
            "{% if false %}{{ ''.__class__.__mro__[1].__subclasses__() }}{% endif %}",
            "{{ cycler.__init__.__globals__ }}",
        ],
    )
    def test_private_attributes_are_refused(self, source: str) -> None:
        with pytest.raises(TemplateProblem, match="not allowed in a template"):
            check_source("body_html", source, ["document"])

    def test_attr_filter_does_not_exist(self) -> None:
        with pytest.raises(TemplateProblem, match="No filter named 'attr'"):
            check_source("body_html", "{{ document|attr('format') }}", ["document"])

    def test_undeclared_placeholder_is_named(self) -> None:
        with pytest.raises(TemplateProblem) as exc:
            check_source("subject", "Approve {{ documnet }}", ["document"])
        assert exc.value.placeholder == "documnet"
        assert exc.value.part == "subject"

    def test_undeclared_placeholder_in_an_unreached_branch_is_named(self) -> None:
        with pytest.raises(TemplateProblem) as exc:
            check_source("body_html", "{% if false %}{{ approver }}{% endif %}", ["document"])
        assert exc.value.placeholder == "approver"

    def test_syntax_error_has_a_line(self) -> None:
        with pytest.raises(TemplateProblem) as exc:
            check_source("body_html", "<p>\n{{ document }\n</p>", ["document"])
        assert exc.value.line is not None

    def test_builtins_and_loops_are_allowed(self) -> None:
        check_source(
            "body_html",
            "{{ recipient_name }}{% for i in items %}{{ loop.index }}{{ i }}{% endfor %}{{ range(3)|list }}",
            ["items"],
        )


class TestRender:
    def test_html_is_autoescaped_subject_and_text_are_not(self) -> None:
        r = render_parts("Approve {{ document }}", "<p>{{ document }}</p>", "Doc: {{ document }}", DATA)
        assert r.body_html == "<p>&lt;ER-1042 &amp; co&gt;</p>"
        assert r.subject == "Approve <ER-1042 & co>"
        assert r.body_text == "Doc: <ER-1042 & co>"
        assert not r.text_derived

    def test_subject_is_one_line(self) -> None:
        r = render_parts("A {{ document }}", "x", None, {**DATA, "document": "x\r\nBcc: evil@example.com"})
        assert "\n" not in r.subject
        assert "\r" not in r.subject

    def test_missing_value_is_named(self) -> None:
        with pytest.raises(TemplateProblem) as exc:
            render_parts("{{ document }}", "<p>{{ amount }}</p>", None, DATA)
        assert exc.value.placeholder == "amount"
        assert exc.value.part == "body_html"

    @pytest.mark.parametrize(
        "source",
        [
            "{{ document.format }}",  # printing a method (the |attr('format') probe's result)
            "{{ '{0.__class__}'.format(document) }}",
            "{{ items.append(1) }}",  # immutable sandbox
            "{{ 'x' * 100000000 }}",
            "{{ range(100000)|list|length }}",
        ],
    )
    def test_sandbox_refuses_at_render(self, source: str) -> None:
        with pytest.raises(TemplateProblem, match="sandbox"):
            render_parts("s", source, None, DATA)

    def test_output_is_capped(self) -> None:
        source = "{% for i in range(1000) %}{{ big }}{% endfor %}"
        with pytest.raises(TemplateProblem, match=f"more than {MAX_OUTPUT_CHARS}"):
            render_parts("s", source, None, {**DATA, "big": "y" * 10_000})

    def test_text_derived_from_html(self) -> None:
        r = render_parts(
            "s",
            "<h1>Bonjour Zoé</h1><p>Votre <b>note</b> &amp; "
            '<a href="https://erp.example.com/w/7">le lien</a></p><ul><li>un</li><li>deux</li></ul>',
            None,
            DATA,
        )
        assert r.text_derived
        assert "Bonjour Zoé" in r.body_text
        assert "Votre note & [le lien](https://erp.example.com/w/7)" in r.body_text
        assert "* un" in r.body_text
        assert "<" not in r.body_text

    def test_html_to_text_keeps_escaped_data_readable(self) -> None:
        assert html_to_text("<p>&lt;ER-1042 &amp; co&gt;</p>").strip() == "<ER-1042 & co>"


class TestChooseLanguage:
    @pytest.mark.parametrize(
        ("wanted", "expected"),
        [
            ("fr", "fr"),
            ("FR", "fr"),
            ("fr-CA", "fr"),
            ("fr_CA", "fr"),
            ("pt", "pt-br"),
            ("de", "en"),
            (None, "en"),
        ],
    )
    def test_choice(self, wanted: str | None, expected: str) -> None:
        assert choose_language(["en", "fr", "pt-br"], "en", wanted) == expected
