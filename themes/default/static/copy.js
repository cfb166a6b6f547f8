// Copy buttons: <button data-copy="#id-of-element" data-copied="Copied">Copy</button>.
// Loaded as a file, never inline (the Content-Security-Policy allows no inline script).
// The clipboard API may be missing (a page not in a secure context) or refused (a browser
// that asks for permission, or says no): then the older execCommand copy is tried, and if
// that fails too the code is selected on the page, so the buyer can copy it by hand.
(function () {
  "use strict";

  function copyWithCommand(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.setAttribute("aria-hidden", "true");
    area.style.position = "fixed";  // the CSSOM, not a style attribute: allowed by the CSP
    area.style.top = "0";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var copied = false;
    try {
      copied = document.execCommand("copy");
    } catch (error) {
      copied = false;
    }
    document.body.removeChild(area);
    return copied;
  }

  function selectText(node) {
    var range = document.createRange();
    range.selectNodeContents(node);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function showCopied(button) {
    if (!button.hasAttribute("data-label")) {
      button.setAttribute("data-label", button.textContent);
    }
    button.textContent = button.getAttribute("data-copied") || "Copied";
    clearTimeout(button.copyTimer);
    button.copyTimer = setTimeout(function () {
      button.textContent = button.getAttribute("data-label");
    }, 1500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) return;
    var source = document.querySelector(button.getAttribute("data-copy"));
    if (!source) return;
    var text = source.textContent.trim();
    var fallBack = function () {
      if (copyWithCommand(text)) {
        showCopied(button);
      } else {
        selectText(source);
      }
    };
    if (navigator.clipboard && navigator.clipboard.writeText && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () { showCopied(button); }, fallBack);
    } else {
      fallBack();
    }
  });
})();
