"""Compare app.mail.build.build_mime with email.message.EmailMessage (policy.default) on typical messages.

Run: .venv/bin/python bench/mime_build.py [iterations]
"""

from __future__ import annotations

import sys
import timeit
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate

from app.mail.build import build_mime, make_message_id
from app.transports.base import Attachment, OutgoingMessage

PDF = bytes(range(256)) * 200  # 50 KiB


def outgoing(kind: str) -> OutgoingMessage:
    msg = OutgoingMessage(
        message_id=make_message_id("example.com"),
        sender="billing@example.com",
        sender_name="Billing Department",
        to=["customer@example.org"],
        cc=["archive@example.com"],
        subject="Your invoice 42 for November",
        body_text="Dear customer,\n\nplease find your invoice attached.\n\nKind regards\n" * 5,
        body_html="<p>Dear customer,</p><p>please find your invoice attached.</p>" * 5,
    )
    if kind == "intl":
        msg.sender_name = "Jürgen Müller"
        msg.subject = "Ihre Rechnung Nr. 42 – Größe und Übermaß"
        msg.body_text = "Sehr geehrte Kundin,\n\nanbei Ihre Rechnung für März.\n" * 5
    if kind == "attachment":
        msg.attachments = [Attachment("invoice-42.pdf", "application/pdf", PDF)]
    return msg


def email_message(m: OutgoingMessage) -> bytes:
    em = EmailMessage()
    em["Date"] = formatdate(usegmt=True)
    em["From"] = Address(m.sender_name or "", addr_spec=m.sender)
    em["To"] = ", ".join(m.to)
    if m.cc:
        em["Cc"] = ", ".join(m.cc)
    em["Subject"] = m.subject
    em["Message-ID"] = m.message_id
    em.set_content(m.body_text or "")
    if m.body_html:
        em.add_alternative(m.body_html, subtype="html")
    for a in m.attachments:
        maintype, subtype = a.content_type.split("/", 1)
        em.add_attachment(a.content, maintype=maintype, subtype=subtype, filename=a.filename)
    return em.as_bytes()


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    print(f"{'message':<12} {'EmailMessage us':>16} {'build_mime us':>14} {'ratio':>7}")
    for kind in ("ascii", "intl", "attachment"):
        m = outgoing(kind)
        reps = n if kind != "attachment" else max(n // 10, 50)
        t_std = min(timeit.repeat(lambda m=m: email_message(m), number=reps, repeat=5)) / reps  # type: ignore[misc]
        t_our = min(timeit.repeat(lambda m=m: build_mime(m), number=reps, repeat=5)) / reps  # type: ignore[misc]
        print(f"{kind:<12} {t_std * 1e6:16.1f} {t_our * 1e6:14.1f} {t_std / t_our:6.1f}x")


if __name__ == "__main__":
    main()
