// Entry point of every page: who is signed in, the navigation, then the page's view.
import { api, ApiError, root } from "./api.js";
import { clear, h, sayError } from "./dom.js";

export const ADMIN_PERMISSIONS = ["manage_tools", "view_audit_logs", "manage_budgets", "manage_org_kb"];

const VIEWS = {
  "sign-in": () => import("./signin.js"),
  chat: () => import("./chat.js"),
  documents: () => import("./documents.js"),
  approvals: () => import("./approvals.js"),
  settings: () => import("./settings.js"),
  admin: () => import("./admin.js"),
};

function showChrome(me) {
  const page = document.body.dataset.page;
  document.getElementById("nav").hidden = false;
  const isAdmin = me.permissions.some((p) => ADMIN_PERMISSIONS.includes(p));
  document.getElementById("nav-admin").hidden = !isAdmin;
  if (!isAdmin) document.getElementById("nav-admin").remove();
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === page) link.setAttribute("aria-current", "page");
  }
  document.getElementById("account").hidden = false;
  document.getElementById("account-name").textContent = me.name || me.email || me.user_id;
  document.getElementById("sign-out").addEventListener("click", async () => {
    try {
      await api("/api/v1/auth/logout", { method: "POST" });
    } catch (err) {
      if (!(err instanceof ApiError && err.status === 401)) sayError(err);
    }
    for (const key of Object.keys(sessionStorage)) if (key.startsWith("keel.")) sessionStorage.removeItem(key);
    location.assign(`${root}/sign-in`);
  });
}

async function main() {
  const view = document.getElementById("view");
  const page = document.body.dataset.page;
  try {
    if (page === "sign-in") {
      const mod = await VIEWS["sign-in"]();
      await mod.render(view);
      return;
    }
    const me = await api("/api/v1/auth/me");
    showChrome(me);
    const mod = await VIEWS[page]();
    clear(view);
    await mod.render(view, me);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return; // on its way to sign in
    clear(view).append(h("p", { class: "error" }, "This page could not be loaded."));
    sayError(err);
  }
}

main();
