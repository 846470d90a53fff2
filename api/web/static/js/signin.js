// Sign-in: EntraID (GET /api/v1/auth/login) and, with KEEL_AUTH_MODE=dev, a form for any identity.
import { api, ApiError, root } from "./api.js";
import { clear, field, h, say, sayError } from "./dom.js";

function nextPath() {
  const next = new URLSearchParams(location.search).get("next") || "";
  // a path on this site only (the server checks it too)
  return next.startsWith("/") && !next.startsWith("//") && !next.includes("\\") ? next : `${root}/chat`;
}

function list(text) {
  return text
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

function devForm() {
  const user = h("input", { name: "user_id", autocomplete: "username", required: true, maxlength: 256 });
  const groups = h("input", { name: "groups", autocomplete: "off" });
  const roles = h("input", { name: "roles", autocomplete: "off" });
  const form = h(
    "form",
    { class: "card stack", "aria-labelledby": "dev-sign-in-title" },
    h("h2", { id: "dev-sign-in-title" }, "Development sign-in"),
    h("p", { class: "hint" }, "KEEL_AUTH_MODE=dev: sign in as anyone. Never available in production."),
    field("User id", user),
    field("Groups", groups, "Group ids, separated by commas or spaces"),
    field("Roles", roles, "e.g. OrgAdmin, DeptAdmin, ReadOnly; none means User"),
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    say("Signing in…");
    try {
      await api("/api/v1/auth/dev-login", {
        method: "POST",
        json: { user_id: user.value.trim(), groups: list(groups.value), roles: list(roles.value) },
      });
      location.assign(nextPath());
    } catch (err) {
      sayError(err);
      if (err instanceof ApiError) user.focus();
    }
  });
  return form;
}

export async function render(view) {
  clear(view);
  const body = document.body.dataset;
  if (body.oidcLogin === "1") {
    const href = `${root}/api/v1/auth/login?next=${encodeURIComponent(nextPath())}`;
    view.append(
      h("p", {}, h("a", { class: "button primary", href }, "Sign in with Microsoft EntraID")),
    );
  }
  if (body.authMode === "dev") view.append(devForm());
  if (body.oidcLogin !== "1" && body.authMode !== "dev") {
    view.append(h("p", {}, "Web sign-in is not configured on this server (see docs/identity.md)."));
  }
}
