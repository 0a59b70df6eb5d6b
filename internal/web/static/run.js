// The run page keeps itself current while the run is pending or running:
// every 5 seconds, never while the tab is hidden, and it stops once the
// run has reached a status that does not change by itself.
(function () {
  "use strict";
  var el = document.getElementById("run");
  if (!el || el.getAttribute("data-live") !== "true") return;
  function tick() {
    if (document.visibilityState !== "visible") return;
    fetch(location.href, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var next = doc.getElementById("run");
      if (!next) return;
      var cur = document.getElementById("run");
      cur.replaceWith(next);
      if (next.getAttribute("data-live") !== "true") clearInterval(timer);
    }).catch(function () {});
  }
  var timer = setInterval(tick, 5000);
  document.addEventListener("visibilitychange", tick);
})();
