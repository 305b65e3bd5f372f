// The page: who is signed in, which screen shows (log in, create an
// account, profiles, chat), and the address bar: `#/` is the profile list,
// `#/p/<profile id>` an open profile, so a reload comes back to the same
// place. `?transport=ws` or `?transport=sse` forces a transport (for
// tests); nothing else is kept.
//
// Who is signed in is the api's to say (`GET /api/me`): the session cookie
// is HttpOnly, and the page stores nothing about the account itself.

import * as api from "./api.js";
import { ChatView } from "./chat.js";

const $ = (id) => document.getElementById(id);

const SCREENS = ["login-screen", "signup-screen", "profiles-screen", "chat-screen"];

/** What the page says when a login ends under it, by the api's code. */
const SESSION_ENDED = {
  session_expired: "Your session has expired. Log in again.",
};
const SESSION_ENDED_OTHERWISE =
  "You were logged out (in another tab, or everywhere from another device). Log in again.";

const transport = (() => {
  const asked = new URLSearchParams(location.search).get("transport");
  return asked === "ws" || asked === "sse" ? asked : "auto";
})();

let me = null; // {id, name}: the signed-in user
let chat = null; // the open ChatView

// --- screens ----------------------------------------------------------------

function show(screenId, focusId) {
  for (const id of SCREENS) $(id).hidden = id !== screenId;
  $("whoami").hidden = !me;
  if (me) $("whoami-name").textContent = me.name;
  document.body.dataset.screen = screenId.replace("-screen", "");
  // Move focus into the new screen, so keyboard and screen-reader users
  // land where the content changed.
  $(focusId)?.focus();
}

/** An error that belongs to no form (role=alert: read out at once). */
function alert(message) {
  const box = $("alert");
  box.textContent = message;
  box.hidden = !message;
}

/** News that is no error (role=status: read out politely). */
function notice(message) {
  const box = $("notice");
  box.textContent = message;
  box.hidden = !message;
}

function closeChat() {
  chat?.close();
  chat = null;
}

// --- logged out: log in, create an account ------------------------------------

/** Forgets the user and shows the login screen with `message` (why). */
function showLogin(message = "") {
  closeChat();
  me = null;
  document.title = "Log in – Rill";
  for (const form of ["login-form", "signup-form"]) clearForm(form);
  alert("");
  notice(message);
  show("login-screen", "login-title");
}

function showSignUp() {
  document.title = "Create an account – Rill";
  clearForm("signup-form");
  alert("");
  notice("");
  show("signup-screen", "signup-title");
}

/** Empties a form's fields (passwords first of all) and its error. */
function clearForm(formId) {
  const form = $(formId);
  form.reset();
  formError(form, "");
}

/** Shows `message` in the form's alert and marks `fields` invalid (or
 *  none), moving focus to the first of them. */
function formError(form, message, fields = []) {
  form.querySelector(".form-error").textContent = message;
  for (const input of form.querySelectorAll("input")) {
    if (fields.includes(input)) input.setAttribute("aria-invalid", "true");
    else input.removeAttribute("aria-invalid");
  }
  fields[0]?.focus();
  fields[0]?.select();
}

/** The sentence for a refused login or sign-up. */
function accountError(err) {
  switch (err.code) {
    case "bad_credentials":
      return "Wrong name or password.";
    case "name_taken":
      return "That name is taken. Choose another.";
    case "bad_name":
      return `That name cannot be used: ${err.message}.`;
    case "password_too_short":
    case "password_too_long":
    case "password_invalid":
      return sentence(err.message);
    case "rate_limited":
      return `Too many attempts; try again in ${err.retryAfterSecs ?? 60} s.`;
    default:
      return err instanceof api.HttpError
        ? `The server refused: ${err.message}`
        : "Cannot reach the server. Check the connection and try again.";
  }
}

const sentence = (text) => text.charAt(0).toUpperCase() + text.slice(1) + (/[.!]$/.test(text) ? "" : ".");

/** Runs `call` with the form's button disabled (no double submits). */
async function submitting(form, call) {
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    return await call();
  } finally {
    button.disabled = false;
  }
}

async function logIn(event) {
  event.preventDefault();
  const form = event.target;
  const name = $("login-name");
  const password = $("login-password");
  if (!name.value.trim()) return formError(form, "Enter your name.", [name]);
  if (!password.value) return formError(form, "Enter your password.", [password]);
  try {
    const user = await submitting(form, () => api.logIn(name.value.trim(), password.value));
    signedIn(user);
  } catch (err) {
    // Whatever was wrong, the api does not say which: keep the name, ask
    // for the password again.
    const fields = err.code === "bad_credentials" ? [password] : [];
    formError(form, accountError(err), fields);
    if (err.code === "bad_credentials") password.value = "";
  }
}

async function signUp(event) {
  event.preventDefault();
  const form = event.target;
  const name = $("signup-name");
  const password = $("signup-password");
  const again = $("signup-password-again");
  if (!name.value.trim()) return formError(form, "Enter a name.", [name]);
  if (!password.value) return formError(form, "Choose a password.", [password]);
  if (password.value !== again.value) {
    again.value = "";
    return formError(form, "The two passwords differ. Type the same password twice.", [again]);
  }
  try {
    const user = await submitting(form, () => api.signUp(name.value.trim(), password.value));
    signedIn(user);
  } catch (err) {
    const fields = {
      name_taken: [name],
      bad_name: [name],
      password_too_short: [password],
      password_too_long: [password],
      password_invalid: [password],
    }[err.code];
    formError(form, accountError(err), fields);
  }
}

/** After a login or a sign-up: the place the address bar points to (a
 *  profile, after a session ended under it), else the profile list. */
function signedIn(user) {
  me = user;
  api.knowName(user.id, user.name);
  for (const form of ["login-form", "signup-form"]) clearForm(form);
  notice("");
  if (location.hash === "#/" || location.hash.startsWith("#/p/")) route();
  else location.hash = "#/"; // the hashchange routes
}

/** Log out (this login) or log out everywhere (every login of the user).
 *  The stream is closed first, so that the edge frees the profile now. */
async function logOut(everywhere) {
  closeChat();
  try {
    await (everywhere ? api.logOutEverywhere() : api.logOut());
  } catch (err) {
    // 401: the login had ended already, which is what was asked.
    if (err.status !== 401) {
      route();
      alert(`Cannot log out: ${err.message}. Try again.`);
      return;
    }
  }
  history.replaceState(null, "", location.pathname + location.search);
  showLogin(everywhere ? "You have logged out everywhere." : "You have logged out.");
}

/** A request or a stream answered 401: the login ended elsewhere. */
function sessionEnded(err) {
  if (!me) return; // told already (several requests can fail at once)
  showLogin(SESSION_ENDED[err?.code] || SESSION_ENDED_OTHERWISE);
}

// --- profiles ---------------------------------------------------------------

async function showProfiles() {
  closeChat();
  document.title = "Profiles – Rill";
  show("profiles-screen", "profiles-title");
  $("profile-list").replaceChildren();
  $("profile-list-empty").hidden = true;
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
    if (err.status !== 401) alert(`Cannot list your profiles: ${err.message}`);
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
    onLoggedOut: sessionEnded,
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

/** Asks the api who is signed in: the user, or null. */
async function whoIsSignedIn() {
  try {
    return await api.me();
  } catch (err) {
    if (err.status === 401) return null;
    throw err;
  }
}

/** Back to a tab left in the background: a login ended meanwhile (and no
 *  stream to say so, on the profile list) shows now, not at the next click. */
async function recheck() {
  if (!me || document.visibilityState !== "visible") return;
  try {
    if (!(await whoIsSignedIn())) sessionEnded();
  } catch {
    // The api is unreachable: the next request will say so.
  }
}

async function start() {
  api.whenSessionEnds(sessionEnded);
  $("login-form").addEventListener("submit", logIn);
  $("signup-form").addEventListener("submit", signUp);
  $("to-signup").addEventListener("click", showSignUp);
  $("to-login").addEventListener("click", () => showLogin());
  $("logout").addEventListener("click", () => logOut(false));
  $("logout-everywhere").addEventListener("click", () => logOut(true));
  $("back-to-profiles").addEventListener("click", (e) => {
    e.preventDefault();
    location.hash = "#/";
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", recheck);
  // Leaving the page closes the stream cleanly, so the edge frees this
  // user's place on the profile at once for the next page (a reload).
  window.addEventListener("pagehide", () => chat?.live.stop());
  window.addEventListener("pageshow", (e) => e.persisted && route());
  // Earlier versions kept the chosen user id here; nothing is kept now.
  localStorage.removeItem("rill.userId");

  try {
    me = await whoIsSignedIn();
  } catch (err) {
    showLogin();
    alert(`Cannot check whether you are logged in: ${err.message}`);
    return;
  }
  if (!me) return showLogin();
  api.knowName(me.id, me.name);
  route();
}

start();
