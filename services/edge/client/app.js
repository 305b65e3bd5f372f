// The page: who is logged in, which screen shows (login, profiles, chat),
// and the address bar: `#/` is the profile list, `#/p/<profile id>` an open
// profile, so a reload comes back to the same place. `?transport=ws` or
// `?transport=sse` forces a transport (for tests); nothing else is kept.

import * as api from "./api.js";
import { ChatView } from "./chat.js";

const $ = (id) => document.getElementById(id);

/** The session cookie is HttpOnly, so the page keeps the user id itself. */
const USER_KEY = "rill.userId";

const transport = (() => {
  const asked = new URLSearchParams(location.search).get("transport");
  return asked === "ws" || asked === "sse" ? asked : "auto";
})();

let me = null; // {id, name}
let chat = null; // the open ChatView

// --- screens ----------------------------------------------------------------

function show(screenId, focusId) {
  for (const id of ["login-screen", "profiles-screen", "chat-screen"]) {
    $(id).hidden = id !== screenId;
  }
  $("whoami").hidden = !me;
  if (me) $("whoami-name").textContent = me.name;
  document.body.dataset.screen = screenId.replace("-screen", "");
  // Move focus into the new screen, so keyboard and screen-reader users
  // land where the content changed.
  $(focusId)?.focus();
}

function alert(message) {
  const box = $("alert");
  box.textContent = message;
  box.hidden = !message;
}

function closeChat() {
  chat?.close();
  chat = null;
}

// --- login ------------------------------------------------------------------

async function showLogin(message = "") {
  closeChat();
  me = null;
  document.title = "Log in – Rill";
  alert(message);
  show("login-screen", "login-title");
  try {
    renderUsers(await api.usersToPick());
  } catch (err) {
    alert(`Cannot list users: ${err.message}`);
  }
}

function renderUsers(users) {
  $("user-list-empty").hidden = users.length > 0;
  $("user-list").replaceChildren(
    ...users.map((user) => {
      api.knowName(user.id, user.name);
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = user.name;
      button.dataset.user = user.id;
      button.setAttribute("aria-label", `Log in as ${user.name}`);
      button.addEventListener("click", () => logIn(user.id));
      const li = document.createElement("li");
      li.append(button);
      return li;
    }),
  );
}

async function logIn(userId) {
  try {
    await api.login(userId);
    me = await api.getUser(userId);
    localStorage.setItem(USER_KEY, me.id);
    alert("");
    // Back to where the address bar points (a profile, after a session
    // ended), else to the profile list (the hashchange routes).
    if (location.hash === "#/" || location.hash.startsWith("#/p/")) route();
    else location.hash = "#/";
  } catch (err) {
    alert(`Cannot log in: ${err.message}`);
  }
}

async function logOut() {
  closeChat();
  localStorage.removeItem(USER_KEY);
  try {
    await api.logout();
  } catch {
    // The cookie expires on its own; the page forgets the user anyway.
  }
  history.replaceState(null, "", location.pathname + location.search);
  showLogin();
}

// --- profiles ---------------------------------------------------------------

async function showProfiles() {
  closeChat();
  document.title = "Profiles – Rill";
  show("profiles-screen", "profiles-title");
  try {
    const page = await api.userProfiles(me.id);
    $("profile-list-empty").hidden = page.items.length > 0;
    $("profile-list").replaceChildren(
      ...page.items.map((profile) => {
        const link = document.createElement("a");
        link.href = `#/p/${profile.id}`;
        link.textContent = profile.name;
        link.dataset.profile = profile.id;
        const li = document.createElement("li");
        li.append(link);
        return li;
      }),
    );
  } catch (err) {
    alert(`Cannot list your profiles: ${err.message}`);
  }
}

// --- chat -------------------------------------------------------------------

function showChat(profileId) {
  closeChat();
  show("chat-screen", null);
  chat = new ChatView({
    profileId,
    me,
    transport,
    alert,
    onLoggedOut: (message) => {
      localStorage.removeItem(USER_KEY);
      showLogin(message);
    },
  });
  chat.open();
}

// --- routing ----------------------------------------------------------------

function route() {
  if (!me) return;
  alert("");
  const match = location.hash.match(/^#\/p\/([0-9a-fA-F-]{36})$/);
  if (match) showChat(match[1]);
  else showProfiles();
}

async function start() {
  $("logout").addEventListener("click", logOut);
  $("back-to-profiles").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "#/";
  });
  $("login-by-id").addEventListener("submit", (e) => {
    e.preventDefault();
    logIn($("login-id").value.trim());
  });
  $("create-testdata").addEventListener("click", async () => {
    try {
      await api.createTestData();
      renderUsers(await api.usersToPick());
    } catch (err) {
      alert(`Cannot create test data: ${err.message}`);
    }
  });
  window.addEventListener("hashchange", route);
  // Leaving the page closes the stream cleanly, so the edge frees this
  // user's place on the profile at once for the next page (a reload).
  window.addEventListener("pagehide", () => chat?.live.stop());
  window.addEventListener("pageshow", (e) => e.persisted && route());

  const saved = localStorage.getItem(USER_KEY);
  if (!saved) return showLogin();
  try {
    me = await api.getUser(saved);
  } catch (err) {
    localStorage.removeItem(USER_KEY);
    return showLogin(err.status === 404 ? "" : `Cannot check who you are: ${err.message}`);
  }
  route();
}

start();
