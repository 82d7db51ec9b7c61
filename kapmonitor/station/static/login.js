// Login page: posts the credentials as JSON; the session cookie is HttpOnly (set by the server).
const form = document.getElementById("login");
const err = document.getElementById("login-error");
form.addEventListener("submit", async (ev) => {
  ev.preventDefault();
  err.textContent = "";
  const body = { username: form.username.value, password: form.password.value };
  const r = await fetch("/api/login", {
    method: "POST", headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body), credentials: "same-origin",
  });
  if (r.ok) {
    sessionStorage.setItem("kap-wants-audio", "1");
    location.assign("/");
  } else {
    const data = await r.json().catch(() => ({}));
    err.textContent = data.error || `login failed (${r.status})`;
  }
});
