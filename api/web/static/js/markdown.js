// Markdown → sanitised DOM: marked (raw HTML in the text is shown as text, never parsed),
// then DOMPurify. Links keep http(s)/mailto/relative targets only and get rel=noopener;
// images survive only from this origin or as data:image/…; nothing else can make the
// browser fetch (and the CSP blocks other hosts anyway).
import { Marked } from "../vendor/marked.esm.js";
import DOMPurify from "../vendor/purify.es.mjs";

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

const marked = new Marked({ gfm: true, async: false });
marked.use({
  renderer: {
    html(token) {
      return escapeHtml(token.text ?? token.raw ?? "");
    },
  },
});

const SAFE_LINK = new Set(["http:", "https:", "mailto:"]);
const DATA_IMAGE = /^data:image\/(png|jpeg|gif|webp);/i;

function resolved(url) {
  try {
    return new URL(url, location.href);
  } catch {
    return null;
  }
}

const purify = DOMPurify(window);
purify.addHook("afterSanitizeAttributes", (node) => {
  if (node.nodeName === "A") {
    const url = resolved(node.getAttribute("href") || "");
    if (!node.hasAttribute("href") || !url || !SAFE_LINK.has(url.protocol)) {
      node.removeAttribute("href");
    } else {
      node.setAttribute("rel", "noopener noreferrer nofollow");
      if (url.origin !== location.origin) node.setAttribute("target", "_blank");
    }
  } else if (node.nodeName === "IMG") {
    const src = node.getAttribute("src") || "";
    const url = resolved(src);
    const allowed = url && (url.origin === location.origin ? url.protocol.startsWith("http") : DATA_IMAGE.test(src));
    if (!allowed) {
      node.removeAttribute("src");
      node.setAttribute("alt", `[image not loaded: ${node.getAttribute("alt") || "no description"}]`);
    }
    if (!node.hasAttribute("alt")) node.setAttribute("alt", "");
  }
});

const CONFIG = {
  USE_PROFILES: { html: true },
  FORBID_TAGS: ["style", "form", "input", "button", "textarea", "select", "iframe", "object", "embed", "svg", "math", "video", "audio", "source", "picture", "link", "meta", "base"],
  FORBID_ATTR: ["style", "srcset", "action", "formaction", "background", "poster", "ping"],
  ALLOW_DATA_ATTR: false,
  RETURN_DOM_FRAGMENT: true,
};

/** A DocumentFragment of the markdown, safe to append. */
export function renderMarkdown(text) {
  const html = marked.parse(String(text ?? ""));
  return purify.sanitize(html, CONFIG);
}
