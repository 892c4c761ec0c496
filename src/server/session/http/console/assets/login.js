// The login page: posts the password to /api/login and, once a session cookie is set, goes
// back to the page the user came from (?next=, only a path on this origin), or to the console.

const form = document.getElementById('login');
const message = document.getElementById('message');

// Only a path of this site: `next` comes from the URL, which anyone can write.
function next() {
  const target = new URLSearchParams(location.search).get('next') ?? '/';
  return target.startsWith('/') && !target.startsWith('//') ? target : '/';
}

function say(text) {
  message.hidden = !text;
  message.textContent = text ?? '';
}

form.addEventListener('submit', async (event) => {
  event.preventDefault();
  const button = form.querySelector('button');
  button.disabled = true;
  say(null);
  try {
    const response = await fetch('/api/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ password: form.password.value }),
      credentials: 'same-origin',
    });
    if (response.ok) {
      location.assign(next());
      return;
    }
    if (response.status === 429) {
      const wait = response.headers.get('Retry-After');
      say(`Too many attempts: try again in ${wait ?? 'a'} ${wait === '1' ? 'second' : 'seconds'}.`);
    } else if (response.status === 401 || response.status === 403) {
      say('Wrong password.');
    } else {
      say(`The server answered ${response.status}: ${(await response.text()).trim()}`);
    }
  } catch (e) {
    say(`Could not reach the server: ${e.message}`);
  } finally {
    button.disabled = false;
    form.password.select();
  }
});
