// The settings page (to come).
import { h } from "./dom.js";

export async function render(view) {
  view.append(h("p", {}, "Coming soon."));
}
