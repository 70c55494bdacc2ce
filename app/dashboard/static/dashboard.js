// Live parts of a page: an element with data-live="<stream url>" receives our Server-Sent
// Events; each event's HTML (rendered and escaped by the server) replaces the element whose
// data-part is the event's name. A stream that ends (its lifetime cap) is opened again.
(function () {
  function follow(root) {
    var source = new EventSource(root.getAttribute("data-live"));
    root.querySelectorAll("[data-part]").forEach(function (part) {
      source.addEventListener(part.getAttribute("data-part"), function (event) {
        part.innerHTML = event.data;
      });
    });
    if (root.hasAttribute("data-part")) {
      source.addEventListener(root.getAttribute("data-part"), function (event) {
        root.innerHTML = event.data;
      });
    }
  }
  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-live]").forEach(follow);
  });
})();
