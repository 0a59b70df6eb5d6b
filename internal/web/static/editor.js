// Workflow editor: a select marked data-autosubmit (the trigger's kind, an
// action's app and action) saves its form as soon as it changes, so the
// fields that depend on it appear. Without JavaScript the form's own
// buttons do the same.
(function () {
  "use strict";
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (!el.matches || !el.matches("select[data-autosubmit]") || !el.form) return;
    var update = el.form.querySelector("button[name=update]");
    if (el.form.requestSubmit) {
      el.form.requestSubmit(update || undefined);
    } else {
      el.form.submit();
    }
  });
})();
