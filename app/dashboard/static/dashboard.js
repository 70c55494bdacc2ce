// Live parts of a page: an element with data-live="<stream url>" receives our Server-Sent
// Events; each event's HTML (rendered and escaped by the server) replaces the element whose
// data-part is the event's name. Pages are boosted by htmx (links and forms swap the body
// without a reload), so streams are opened for each new body and closed with the old one.
(function () {
  var open = [];

  function follow(root) {
    var source = new EventSource(root.getAttribute("data-live"));
    open.push(source);
    var parts = Array.prototype.slice.call(root.querySelectorAll("[data-part]"));
    if (root.hasAttribute("data-part")) parts.push(root);
    parts.forEach(function (part) {
      source.addEventListener(part.getAttribute("data-part"), function (event) {
        if (part === root) {
          root.innerHTML = event.data;
        } else {
          part.innerHTML = event.data;
        }
      });
    });
  }

  function followWithin(element) {
    if (element.matches && element.matches("[data-live]")) follow(element);
    element.querySelectorAll("[data-live]").forEach(follow);
  }

  function closeAll() {
    open.forEach(function (source) { source.close(); });
    open = [];
  }

  if (window.htmx) {
    document.addEventListener("htmx:beforeSwap", function (event) {
      if (event.detail.target === document.body) closeAll();
    });
    htmx.onLoad(followWithin);
  } else {
    document.addEventListener("DOMContentLoaded", function () { followWithin(document.body); });
  }
})();
