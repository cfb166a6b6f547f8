// Gateway forms (<form data-autosubmit>) are sent at once; without script the buyer presses
// the form's button. Loaded as a file, never inline (the Content-Security-Policy allows no
// inline script without a nonce).
document.addEventListener("DOMContentLoaded", function () {
  var form = document.querySelector("form[data-autosubmit]");
  if (form) form.submit();
});
