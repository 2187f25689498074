// The status page refreshes its #live section in place every few seconds (the same page, fetched again), unless
// the refresh is paused or the keyboard focus is inside it. Every page works without this script.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.fetch || !window.DOMParser) { return; }
  var seconds = parseInt(live.getAttribute("data-refresh"), 10) || 10;
  var paused = false;
  function wirePause() {
    var b = live.querySelector("button.pause");
    if (!b) { return; }
    b.hidden = false;
    b.textContent = paused ? "Resume refresh" : "Pause refresh";
    b.setAttribute("aria-pressed", paused ? "true" : "false");
    if (!b.getAttribute("data-wired")) {
      b.setAttribute("data-wired", "1");
      b.addEventListener("click", function () { paused = !paused; wirePause(); });
    }
  }
  function refresh() {
    var focusInside = document.activeElement && document.activeElement !== document.body &&
      live.contains(document.activeElement);
    if (paused || focusInside || document.hidden) { return; }
    fetch(window.location.href, {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) { return; }
        var fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (fresh) { live.innerHTML = fresh.innerHTML; wirePause(); }
      })
      .catch(function () { /* the next tick tries again */ });
  }
  wirePause();
  window.setInterval(refresh, seconds * 1000);
}());
