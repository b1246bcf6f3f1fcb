// Progressive enhancement only: every page works without this file.
// 1. Forms marked data-confirm ask before they are sent.
// 2. An open Messagerie list refreshes itself when a message arrives (Server-Sent Events).
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });

  var list = document.getElementById("liste");
  if (!list || !list.hasAttribute("data-events") || !window.EventSource) { return; }
  var live = document.getElementById("direct");
  var busy = false;
  function refresh() {
    if (busy) { return; }
    busy = true;
    fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var page = new DOMParser().parseFromString(html, "text/html");
        ["liste", "compteur"].forEach(function (id) {
          var fresh = page.getElementById(id), old = document.getElementById(id);
          if (fresh && old) { old.innerHTML = fresh.innerHTML; }
        });
        if (live) { live.textContent = "Nouveau message reçu."; }
      })
      .catch(function () { /* the next event, or a reload, tries again */ })
      .then(function () { busy = false; });
  }
  var source = new EventSource(list.getAttribute("data-events"));
  source.addEventListener("nouveau", refresh);
})();
