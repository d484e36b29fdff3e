// berth dashboard: the few behaviours htmx attributes cannot express
// (no inline script: the page's Content-Security-Policy forbids it).
(function () {
  'use strict';
  var EVENTS_SHOWN_MAX = 200;
  var RELOAD_AFTER_MS = 8000;
  var reloadTimer = null;

  function banner(show) {
    var b = document.getElementById('conn');
    if (b) { b.hidden = !show; }
  }

  // Live updates come over SSE. When the stream fails and does not come
  // back, fall back to a plain reload (which also shows the login page
  // when the session expired).
  document.addEventListener('htmx:sseError', function () {
    banner(true);
    document.body.dataset.live = '0';
    if (!reloadTimer) {
      reloadTimer = window.setTimeout(function () { window.location.reload(); }, RELOAD_AFTER_MS);
    }
  });
  document.addEventListener('htmx:sseOpen', function () {
    banner(false);
    document.body.dataset.live = '1';
    if (reloadTimer) { window.clearTimeout(reloadTimer); reloadTimer = null; }
  });
  // Without htmx (blocked or failed to load) the page still refreshes.
  window.addEventListener('load', function () {
    if (typeof window.htmx === 'undefined') {
      window.setTimeout(function () { window.location.reload(); }, 30000);
    }
  });

  // Keep the events panel bounded.
  document.addEventListener('htmx:sseMessage', function () {
    var list = document.getElementById('events');
    while (list && list.children.length > EVENTS_SHOWN_MAX) {
      list.removeChild(list.lastElementChild);
    }
  });

  // The uninstall confirmation opens as a modal dialog and closes when
  // its request was sent or when cancelled.
  document.addEventListener('htmx:afterSwap', function (e) {
    var d = e.detail && e.detail.target;
    if (d && d.id === 'dialog' && typeof d.showModal === 'function' && !d.open) {
      d.showModal();
    }
  });
  document.addEventListener('htmx:afterRequest', function (e) {
    var d = document.getElementById('dialog');
    if (d && d.open && d.contains(e.target) && e.target.tagName === 'FORM') { d.close(); }
  });
  document.addEventListener('click', function (e) {
    var c = e.target.closest && e.target.closest('[data-close-dialog]');
    if (c) {
      var d = document.getElementById('dialog');
      if (d && d.open) { e.preventDefault(); d.close(); }
    }
  });
  // A session that expired answers 401: go to the login page.
  document.addEventListener('htmx:responseError', function (e) {
    if (e.detail && e.detail.xhr && e.detail.xhr.status === 401) {
      window.location.href = '/login';
    }
  });
})();
