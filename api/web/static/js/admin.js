// The admin pages (by permission; the API refuses the routes to everyone else anyway).
import { ADMIN_PERMISSIONS } from "./app.js";
import { h } from "./dom.js";

export async function render(view, me) {
  if (!me.permissions.some((p) => ADMIN_PERMISSIONS.includes(p))) {
    view.append(h("p", {}, "You do not have access to the admin pages."));
    return;
  }
  view.append(h("p", {}, "Coming soon."));
}
