// Small enhancements; every page works without them.
(function () {
  "use strict";

  // Workspace form: suggest a slug from the name until the slug is edited,
  // and say whether it is available as it is typed.
  var form = document.getElementById("create-workspace");
  if (!form) return;
  var name = form.querySelector("[data-slug-source]");
  var slug = form.querySelector("[data-slug-check]");
  var status = form.querySelector("[data-slug-status]");
  var touched = slug.value !== "";
  var timer = null;
  var seq = 0;

  function slugify(s) {
    return s.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "")
      .replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, "").slice(0, 50).replace(/-+$/, "");
  }

  function show(text, ok) {
    status.textContent = text;
    status.classList.toggle("ok", ok);
    status.classList.toggle("field-error", !ok && text !== "");
    slug.setAttribute("aria-invalid", !ok && text !== "" ? "true" : "false");
  }

  function check() {
    var value = slug.value;
    if (value === "") { show("", false); return; }
    var mine = ++seq;
    fetch("/api/v1/workspaces/slug-availability?slug=" + encodeURIComponent(value), {
      headers: { "Accept": "application/json" }, credentials: "same-origin"
    }).then(function (r) { return r.json(); }).then(function (body) {
      if (mine !== seq) return; // a newer check is under way
      if (body.error) { show(body.error.message, false); return; }
      show(body.message, body.available);
    }).catch(function () { if (mine === seq) show("", false); });
  }

  function schedule() { clearTimeout(timer); timer = setTimeout(check, 200); }

  name.addEventListener("input", function () {
    if (touched) return;
    slug.value = slugify(name.value);
    schedule();
  });
  slug.addEventListener("input", function () { touched = slug.value !== ""; schedule(); });
  if (slug.value !== "" && status.textContent === "") check();
})();

// Live pages. A workspace page listens to its event stream (Server-Sent
// Events): when the person's alerts change (a connection broke or was
// fixed) or the run on screen moves, it fetches itself again and swaps in
// its live regions (the bell, the banner, the runs list, the run). Hidden
// tabs close the stream and catch up when shown again. Without a stream
// (an old browser, or it keeps failing) a running run's page polls every
// 10 seconds instead.
(function () {
  "use strict";
  var base = document.body.getAttribute("data-live");
  if (!base) return;
  var runEl = document.getElementById("run");
  var runID = runEl ? runEl.getAttribute("data-run") : "";
  var url = base + (runID ? "?run=" + encodeURIComponent(runID) : "");
  var source = null, pollTimer = null, failures = 0, busy = false, again = false;
  // What the page was drawn with: a change before the stream connected
  // still counts.
  function drawn() {
    var r = document.getElementById("run");
    return { alerts: document.body.getAttribute("data-alerts"), run: r ? r.getAttribute("data-state") : null };
  }
  var known = drawn();

  function polling() {
    var r = document.getElementById("run");
    return r && r.getAttribute("data-poll") === "true";
  }

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        document.querySelectorAll("[data-live-region]").forEach(function (cur) {
          var next = cur.id && doc.getElementById(cur.id);
          if (!next) return;
          // Keep what the person ticked and opened.
          cur.querySelectorAll("input[type=checkbox][data-keep]:checked").forEach(function (c) {
            var n = next.querySelector('input[data-keep="' + c.getAttribute("data-keep") + '"]');
            if (n) n.checked = true;
          });
          cur.querySelectorAll("details[data-keep]").forEach(function (d) {
            var n = next.querySelector('details[data-keep="' + d.getAttribute("data-keep") + '"]');
            if (n) n.open = d.open;
          });
          cur.replaceWith(next);
        });
        var b = doc.body.getAttribute("data-alerts");
        if (b !== null) document.body.setAttribute("data-alerts", b);
      })
      .catch(function () {})
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  function changed(kind, value) {
    var was = known[kind];
    known[kind] = value;
    return was !== null && was !== value;
  }

  function open() {
    if (source || !window.EventSource) return;
    source = new EventSource(url);
    source.addEventListener("alerts", function (e) {
      failures = 0;
      if (changed("alerts", JSON.parse(e.data).signature)) refresh();
    });
    source.addEventListener("run", function (e) {
      failures = 0;
      var r = JSON.parse(e.data);
      if (changed("run", [r.status, r.stepsDone, r.reason].join("|"))) refresh();
    });
    source.onerror = function () {
      if (++failures >= 3) { close(); startPolling(); }
    };
  }

  function close() {
    if (source) { source.close(); source = null; }
  }

  function startPolling() {
    if (pollTimer) return;
    pollTimer = setInterval(function () {
      if (document.visibilityState === "visible" && polling()) refresh();
    }, 10000);
  }

  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "visible") {
      refresh();
      known = drawn();
      if (!pollTimer) open();
    } else {
      close();
    }
  });
  if (!window.EventSource) startPolling();
  else if (document.visibilityState === "visible") open();
})();

// A page still working on something (a bulk action) reloads itself until
// it is done; without JavaScript it has a Refresh link.
(function () {
  "use strict";
  var el = document.querySelector("[data-reload-every]");
  if (!el) return;
  setTimeout(function () { location.reload(); }, parseInt(el.getAttribute("data-reload-every"), 10) || 1000);
})();
