// The app page: checks the session, then shows one page at a time by the URL's hash
// (#/explore?level=warning&q=timeout), so that every view, filters included, is a link.
//
// A page is a module with `show(view, params)`: it builds its elements inside `view` and
// returns a function that stops whatever it started (timers, the live tail) when the user
// goes to another page.

import { loadSession, post, toLogin } from './api.js';
import { problem } from './dom.js';
import * as connections from './connections.js';
import * as tokens from './tokens.js';
import * as explore from './explore.js';
import * as server from './server.js';

const PAGES = { connections, tokens, explore, server };
const TITLES = {
  connections: 'Connections',
  tokens: 'Applications and tokens',
  explore: 'Explore',
  server: 'Server',
};

let stop = null;

// "#/explore?level=warning" -> ["explore", URLSearchParams]; an unknown page is Explore.
function parseHash() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const name = Object.hasOwn(PAGES, path) ? path : 'explore';
  return [name, new URLSearchParams(query)];
}

function route() {
  const [name, params] = parseHash();
  if (stop) stop();
  stop = null;
  problem(null);
  for (const link of document.querySelectorAll('nav a')) {
    if (link.dataset.page === name) link.setAttribute('aria-current', 'page');
    else link.removeAttribute('aria-current');
  }
  document.title = `${TITLES[name]} · logmill console`;
  const view = document.getElementById('view');
  view.replaceChildren();
  view.dataset.page = name;
  stop = PAGES[name].show(view, params) ?? null;
}

async function logOut() {
  try {
    await post('/api/logout');
  } catch (e) {
    // Logged out or not, the login page is where the user goes next.
    console.warn('logout:', e.message);
  }
  location.assign('/login');
}

async function start() {
  document.getElementById('logout').addEventListener('click', logOut);
  try {
    await loadSession();
  } catch (e) {
    if (e.status !== 401) problem(e);
    if (e.status === 401) toLogin();
    return;
  }
  window.addEventListener('hashchange', route);
  route();
}

start();
