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
