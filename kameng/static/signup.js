/* The sign-up form's live shop-address check: asks /signup/check while the address is typed
   and says beside the field whether it is free. Without JavaScript the form still works: the
   server checks the address when the form is sent. */
(function () {
  "use strict";
  var input = document.querySelector("input[data-check-url]");
  var status = document.getElementById("slug-status");
  if (!input || !status || !window.fetch) { return; }
  var timer = null;
  var latest = 0;

  function show(text, ok) {
    status.textContent = text;
    status.classList.toggle("field-error", ok === false);
    status.classList.toggle("ok", ok === true);
    if (ok === false) { input.setAttribute("aria-invalid", "true"); }
    else { input.removeAttribute("aria-invalid"); }
  }

  function check() {
    var slug = input.value.trim().toLowerCase();
    if (!slug) { show("", null); return; }
    var ticket = ++latest;
    var url = input.getAttribute("data-check-url") + "?slug=" + encodeURIComponent(slug);
    fetch(url, { headers: { "Accept": "application/json" }, credentials: "same-origin" })
      .then(function (response) { return response.ok ? response.json() : null; })
      .then(function (answer) {
        if (answer && ticket === latest) { show(answer.message, !!answer.available); }
      })
      .catch(function () { /* offline: the server checks on submit */ });
  }

  input.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(check, 300);
  });
  if (input.value) { check(); }
}());
