/* Lifeboat's only script besides htmx (the Content-Security-Policy allows scripts from this site, nothing inline).
   - The Menu button folds the navigation on small screens (without this script the menu simply stays open).
   - One navigation group open at a time; a click elsewhere or Escape closes it.
   - Forms with data-confirm ask before a destructive action (delete, disaster run): a native confirm().
   - Wide tables scroll inside their own box; those that do get tabindex=0 so a keyboard can scroll them too. */
(function () {
  "use strict";
  document.documentElement.classList.add("js");

  function closeGroups(except) {
    document.querySelectorAll("details.nav-group[open]").forEach(function (d) {
      if (d !== except) { d.removeAttribute("open"); }
    });
  }

  function scrollableTables(root) {
    (root || document).querySelectorAll("main table").forEach(function (table) {
      if (table.scrollWidth > table.clientWidth + 1) { table.setAttribute("tabindex", "0"); }
      else { table.removeAttribute("tabindex"); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector(".menu-toggle");
    var menu = document.getElementById("site-menu");
    if (toggle && menu) {
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") !== "true";
        toggle.setAttribute("aria-expanded", open ? "true" : "false");
        menu.classList.toggle("open", open);
      });
    }
    document.querySelectorAll("details.nav-group").forEach(function (d) {
      d.addEventListener("toggle", function () { if (d.open) { closeGroups(d); } });
    });
    scrollableTables();
  });

  document.addEventListener("click", function (event) {
    if (!event.target.closest("details.nav-group")) { closeGroups(null); }
  });
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") { closeGroups(null); }
  });
  window.addEventListener("resize", function () { scrollableTables(); });
  document.addEventListener("htmx:afterSettle", function () { scrollableTables(); });

  /* A confirmation before destructive actions: <form data-confirm="Delete web-1?">. Works for plain posts and
     for htmx ones (htmx fires submit first; cancelling it stops both). */
  document.addEventListener("submit", function (event) {
    var form = event.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) {
      event.preventDefault();
      event.stopImmediatePropagation();
    }
  }, true);
}());
