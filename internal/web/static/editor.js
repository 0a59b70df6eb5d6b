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

// Expression fields: as a person types into a step's field that holds
// {{ … }}, the value it would take against the samples (the trigger's
// sample and the steps' last tests) is shown under it, or the syntax error
// marks the field at once, before the draft is saved. Typing "$" offers
// the variables ($trigger, $steps.<id>, $input, $meta) and the JSONata
// functions; Arrow keys choose, Enter or Tab inserts, Escape closes.
(function () {
  var root = document.querySelector('[data-preview]');
  if (!root || !window.fetch) return;
  var url = root.getAttribute('data-preview');
  var steps = (root.getAttribute('data-steps') || '').split(/\s+/).filter(Boolean);
  var functions = ['$string(', '$number(', '$boolean(', '$exists(', '$count(', '$sum(', '$max(', '$min(', '$average(',
    '$uppercase(', '$lowercase(', '$trim(', '$substring(', '$substringBefore(', '$substringAfter(', '$contains(',
    '$split(', '$join(', '$replace(', '$match(', '$length(', '$round(', '$floor(', '$ceil(', '$abs(', '$now(',
    '$millis(', '$fromMillis(', '$toMillis(', '$keys(', '$lookup(', '$merge(', '$map(', '$filter(', '$reduce(',
    '$sort(', '$reverse(', '$distinct(', '$append(', '$each(', '$not(', '$type(', '$formatNumber(', '$encodeUrlComponent('];
  function words() {
    var w = ['$trigger', '$input', '$meta', '$steps'];
    steps.forEach(function (id) { w.push('$steps.' + id + '.data'); });
    return w.concat(functions);
  }
  function isExprField(el) {
    return el && el.closest && el.closest('.ed-step form') && (el.tagName === 'TEXTAREA' || (el.tagName === 'INPUT' && el.type === 'text')) &&
      el.name !== 'name' && el.name !== 'sample' && el.name !== 'source';
  }
  function outputFor(el) {
    var id = 'preview-' + (el.form.getAttribute('action') || '').replace(/[^a-z0-9]+/gi, '-') + '-' + el.name.replace(/[^a-z0-9]+/gi, '-');
    var out = document.getElementById(id);
    if (!out) {
      out = document.createElement('output');
      out.id = id;
      out.className = 'ed-preview mono small';
      out.setAttribute('aria-live', 'polite');
      el.insertAdjacentElement('afterend', out);
      el.setAttribute('aria-describedby', ((el.getAttribute('aria-describedby') || '') + ' ' + id).trim());
    }
    return out;
  }
  var timers = new WeakMap();
  function preview(el) {
    var text = el.value;
    var out = outputFor(el);
    if (text.indexOf('{{') < 0) {
      out.textContent = '';
      out.classList.remove('ed-preview-error');
      el.removeAttribute('aria-invalid');
      return;
    }
    fetch(url, { method: 'POST', credentials: 'same-origin', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ text: text }) })
      .then(function (r) { return r.json(); })
      .then(function (res) {
        if (el.value !== text) return;
        if (res.error) {
          out.textContent = (res.error.code ? res.error.code + ': ' : '') + res.error.message;
          out.classList.add('ed-preview-error');
          if (/INVALID|SYNTAX/.test(res.error.code || '')) el.setAttribute('aria-invalid', 'true');
          else el.removeAttribute('aria-invalid');
          return;
        }
        out.textContent = '= ' + JSON.stringify(res.value);
        out.classList.remove('ed-preview-error');
        el.removeAttribute('aria-invalid');
      })
      .catch(function () { out.textContent = ''; });
  }
  // The completion list.
  var list = document.createElement('ul');
  list.className = 'ed-complete';
  list.setAttribute('role', 'listbox');
  list.id = 'ed-complete';
  list.hidden = true;
  document.body.appendChild(list);
  var target = null, start = 0, items = [], active = 0;
  function close() { list.hidden = true; items = []; if (target) target.removeAttribute('aria-activedescendant'); }
  function render() {
    list.innerHTML = '';
    items.forEach(function (w, i) {
      var li = document.createElement('li');
      li.id = 'ed-complete-' + i;
      li.setAttribute('role', 'option');
      li.textContent = w;
      if (i === active) { li.className = 'active'; li.setAttribute('aria-selected', 'true'); }
      li.addEventListener('mousedown', function (e) { e.preventDefault(); active = i; accept(); });
      list.appendChild(li);
    });
    var r = target.getBoundingClientRect();
    list.style.left = (window.scrollX + r.left) + 'px';
    list.style.top = (window.scrollY + r.bottom) + 'px';
    list.hidden = items.length === 0;
    target.setAttribute('aria-activedescendant', 'ed-complete-' + active);
  }
  function suggest(el) {
    var pos = el.selectionStart == null ? el.value.length : el.selectionStart;
    var before = el.value.slice(0, pos);
    var open = before.lastIndexOf('{{'), shut = before.lastIndexOf('}}');
    var m = /\$[A-Za-z0-9_.]*$/.exec(before);
    if (!m || open < 0 || shut > open) { close(); return; }
    target = el; start = pos - m[0].length;
    items = words().filter(function (w) { return w.indexOf(m[0]) === 0 && w !== m[0]; }).slice(0, 12);
    active = 0;
    render();
  }
  function accept() {
    if (!target || !items.length) return;
    var pos = target.selectionStart;
    var w = items[active];
    target.value = target.value.slice(0, start) + w + target.value.slice(pos);
    var at = start + w.length;
    target.setSelectionRange(at, at);
    close();
    target.focus();
    preview(target);
  }
  document.addEventListener('input', function (e) {
    var el = e.target;
    if (!isExprField(el)) return;
    suggest(el);
    clearTimeout(timers.get(el));
    timers.set(el, setTimeout(function () { preview(el); }, 250));
  });
  document.addEventListener('keydown', function (e) {
    if (list.hidden || e.target !== target) return;
    if (e.key === 'ArrowDown') { active = (active + 1) % items.length; render(); e.preventDefault(); }
    else if (e.key === 'ArrowUp') { active = (active + items.length - 1) % items.length; render(); e.preventDefault(); }
    else if (e.key === 'Enter' || e.key === 'Tab') { accept(); e.preventDefault(); }
    else if (e.key === 'Escape') { close(); e.preventDefault(); }
  });
  document.addEventListener('focusout', function (e) { if (e.target === target) setTimeout(close, 100); });
  document.querySelectorAll('.ed-step form textarea, .ed-step form input[type=text]').forEach(function (el) {
    if (isExprField(el) && el.value.indexOf('{{') >= 0) preview(el);
  });
})();

// The picture: a step's box can be dragged onto a "+" to move the step
// there (the same place a step added by that "+" would take). A press
// without a drag still opens the step's settings; without JavaScript, or
// from the keyboard, the card's "Move after" does the same.
(function () {
  "use strict";
  var drag = null, suppress = 0;
  document.addEventListener('click', function (e) {
    if (Date.now() < suppress && e.target.closest && e.target.closest('.ed-diagram')) e.preventDefault();
  }, true);
  function plusAt(x, y) {
    var el = document.elementFromPoint(x, y);
    return el && el.closest ? el.closest('.ed-diagram .dg-plus') : null;
  }
  function mark(plus) {
    if (drag.over) drag.over.classList.remove('dg-drop');
    drag.over = plus;
    if (plus) plus.classList.add('dg-drop');
  }
  document.addEventListener('pointerdown', function (e) {
    var box = e.target.closest && e.target.closest('.ed-diagram .dg-node');
    if (!box || e.button !== 0) return;
    var m = /^#step-(.+)$/.exec(box.getAttribute('href') || '');
    if (!m) return; // the trigger stays first
    drag = { box: box, id: m[1], x: e.clientX, y: e.clientY, moved: false, over: null };
  });
  document.addEventListener('pointermove', function (e) {
    if (!drag) return;
    var dx = e.clientX - drag.x, dy = e.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 6) return;
    drag.moved = true;
    e.preventDefault();
    var svg = drag.box.ownerSVGElement, k = svg.viewBox.baseVal.width / svg.getBoundingClientRect().width || 1;
    drag.box.setAttribute('transform', 'translate(' + dx * k + ' ' + dy * k + ')');
    drag.box.classList.add('dg-dragging');
    mark(plusAt(e.clientX, e.clientY));
  });
  document.addEventListener('pointerup', function (e) {
    if (!drag) return;
    var d = drag;
    drag = null;
    if (!d.moved) return;
    d.box.removeAttribute('transform');
    d.box.classList.remove('dg-dragging');
    // The box under the pointer hides nothing: it is drawn where it was.
    var plus = plusAt(e.clientX, e.clientY) || d.over;
    if (d.over) d.over.classList.remove('dg-drop');
    suppress = Date.now() + 500; // the click that ends a drag opens nothing
    if (!plus) return;
    var q = new URL(plus.getAttribute('href'), location.href).searchParams;
    var form = document.createElement('form');
    form.method = 'post';
    form.action = location.pathname.replace(/\/$/, '') + '/steps/' + encodeURIComponent(d.id) + '/move';
    [['after', q.get('insert') || ''], ['path', q.get('path') || ''], ['to', q.get('to') || '']].forEach(function (f) {
      var i = document.createElement('input');
      i.type = 'hidden';
      i.name = f[0];
      i.value = f[1];
      form.appendChild(i);
    });
    document.body.appendChild(form);
    form.submit();
  });
})();
