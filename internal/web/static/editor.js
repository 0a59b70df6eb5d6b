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

// Data picker: a value's button inserts its expression at the cursor of
// the step's expression field last focused.
(function () {
  var last = null;
  document.addEventListener('focusin', function (e) {
    var t = e.target;
    if ((t.tagName === 'INPUT' && t.type === 'text') || t.tagName === 'TEXTAREA') last = t;
  });
  document.addEventListener('click', function (e) {
    var b = e.target.closest('[data-insert]');
    if (!b) return;
    var card = b.closest('.ed-step');
    var field = last && card && card.contains(last) ? last : card && card.querySelector('textarea, input[type=text]:not([name=name])');
    if (!field) return;
    var s = field.selectionStart == null ? field.value.length : field.selectionStart;
    var end = field.selectionEnd == null ? s : field.selectionEnd;
    var text = b.getAttribute('data-insert');
    field.value = field.value.slice(0, s) + text + field.value.slice(end);
    field.focus();
    field.setSelectionRange(s + text.length, s + text.length);
  });
})();
