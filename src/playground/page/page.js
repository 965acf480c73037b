// The playground's Discord client: one channel, three members, slash commands, reactions and buttons.
// Plain browser JavaScript, no build step. It speaks only to the playground's API (page-server.ts), which
// turns each action into what Discord would send the bot.

const $ = (id) => document.getElementById(id);
const MEMBER_KEY = 'imagine-playground-member';

/** @type {{ guild: any, channel: any, bot: any, members: any[], people: Record<string,string>, roles: Record<string,string>, commands: any[] }} */
let world;
/** Messages by id, as the server's MessageView. */
const messages = new Map();
/** Local notices ("The application did not respond"), each for one member. */
const notices = [];
const dismissed = new Set();
let me = localStorage.getItem(MEMBER_KEY) ?? '';

// ---- Markdown (Discord's subset) -------------------------------------------------------------------------------

const ESCAPES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const esc = (text) => String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);

/** Inline Markdown of one line: escapes, code, mentions, bold/italic/underline/strike/spoiler, links. */
function inline(text) {
  const slots = [];
  const keep = (html) => `\u0000${slots.push(html) - 1}\u0000`;
  let out = text
    .replace(/\\([^A-Za-z0-9\s])/g, (_, ch) => keep(esc(ch)))
    .replace(/`([^`]+)`/g, (_, code) => keep(`<code>${esc(code)}</code>`))
    .replace(/<@!?(\d+)>/g, (_, id) => keep(`<span class="mention">@${esc(world?.people[id] ?? 'unknown')}</span>`))
    .replace(/<@&(\d+)>/g, (_, id) => keep(`<span class="mention">@${esc(world?.roles[id] ?? 'deleted-role')}</span>`))
    .replace(/<#(\d+)>/g, (_, id) => keep(`<span class="mention">#${esc(id === world?.channel.id ? world.channel.name : 'channel')}</span>`))
    .replace(/\[([^\]\n]+)\]\((https?:\/\/[^\s)]+)\)/g, (_, label, url) =>
      keep(`<a href="${esc(url)}" target="_blank" rel="noopener noreferrer">${inline(label)}</a>`))
    .replace(/\bhttps?:\/\/[^\s<]+[^\s<.,:;"')\]]/g, (url) => keep(`<a href="${esc(url)}" target="_blank" rel="noopener noreferrer">${esc(url)}</a>`));
  out = esc(out)
    .replace(/\*\*(.+?)\*\*/g, '<strong>$1</strong>')
    .replace(/__(.+?)__/g, '<u>$1</u>')
    .replace(/(^|[^*])\*(?!\s)(.+?)\*(?!\*)/g, '$1<em>$2</em>')
    .replace(/(^|\W)_(?!\s)(.+?)_(?=\W|$)/g, '$1<em>$2</em>')
    .replace(/~~(.+?)~~/g, '<s>$1</s>')
    .replace(/\|\|(.+?)\|\|/g, '<span class="spoiler">$1</span>');
  return out.replace(/\u0000(\d+)\u0000/g, (_, i) => slots[Number(i)]);
}

/** Block Markdown: code blocks, quotes, headings, subtext; lines joined with <br>. */
function markdown(text) {
  if (!text) return '';
  const parts = text.split(/```(?:[a-z0-9+-]*\n)?([\s\S]*?)```/i);
  let html = '';
  parts.forEach((part, i) => {
    if (i % 2 === 1) {
      html += `<pre><code>${esc(part)}</code></pre>`;
      return;
    }
    const lines = part.split('\n');
    let quote = [];
    const flush = () => {
      if (quote.length) html += `<blockquote>${quote.join('<br>')}</blockquote>`;
      quote = [];
    };
    lines.forEach((line, j) => {
      const quoted = /^>>?>? (.*)$/.exec(line) ?? (line === '>' ? ['', ''] : null);
      if (quoted) {
        quote.push(inline(quoted[1]));
        return;
      }
      flush();
      const heading = /^(#{1,3}) (.+)$/.exec(line);
      const subtext = /^-# (.+)$/.exec(line);
      if (heading) html += `<h${heading[1].length + 2}>${inline(heading[2])}</h${heading[1].length + 2}>`;
      else if (subtext) html += `<div class="subtext">${inline(subtext[1])}</div>`;
      else html += inline(line) + (j < lines.length - 1 ? '<br>' : '');
    });
    flush();
  });
  return html;
}

// ---- Rendering -------------------------------------------------------------------------------------------------

const COLORS = ['#5865f2', '#3ba55c', '#faa61a', '#ed4245', '#eb459e', '#9b59b6'];
function avatar(id, name) {
  let hash = 0;
  for (const c of id) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  const color = id === world?.bot.id ? '#5865f2' : COLORS[(hash % (COLORS.length - 1)) + 1];
  return `<div class="avatar" style="--avatar:${color}" aria-hidden="true">${esc((name || '?').slice(0, 1).toUpperCase())}</div>`;
}

const clock = (iso) => new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

function renderEmbed(embed) {
  const color = embed.color !== undefined ? `#${embed.color.toString(16).padStart(6, '0')}` : '#1e1f22';
  const fields = (embed.fields ?? [])
    .map((f) => `<div class="embed-field${f.inline ? ' inline' : ''}"><div class="embed-field-name">${inline(f.name)}</div><div>${markdown(f.value)}</div></div>`)
    .join('');
  const image = embed.image?.url && /^https?:/.test(embed.image.url)
    ? `<div class="embed-image"><img src="${esc(embed.image.url)}" alt="picture" decoding="async"></div>`
    : '';
  return `<div class="embed" style="border-left-color:${color}">
    ${embed.title ? `<div class="embed-title">${inline(embed.title)}</div>` : ''}
    ${embed.description ? `<div class="embed-description">${markdown(embed.description)}</div>` : ''}
    ${fields ? `<div class="embed-fields">${fields}</div>` : ''}
    ${image}
    ${embed.footer?.text ? `<div class="embed-footer">${inline(embed.footer.text)}</div>` : ''}
  </div>`;
}

function renderComponents(rows) {
  const html = rows
    .filter((row) => row.type === 1)
    .map((row) => `<div class="action-row">${(row.components ?? [])
      .filter((c) => c.type === 2)
      .map((b) => {
        const label = `${b.emoji?.name ? esc(b.emoji.name) + ' ' : ''}${esc(b.label ?? '')}`;
        if (b.style === 5) {
          const url = /^https?:\/\//.test(b.url ?? '') ? esc(b.url) : '#';
          return `<a class="component-button" data-style="5" href="${url}" target="_blank" rel="noopener noreferrer">${label}</a>`;
        }
        return `<button type="button" class="component-button" data-style="${b.style}" data-custom-id="${esc(b.custom_id)}"${b.disabled ? ' disabled' : ''}>${label}</button>`;
      })
      .join('')}</div>`)
    .join('');
  return html ? `<div class="components">${html}</div>` : '';
}

function renderMessage(view) {
  const context = view.command
    ? `<div class="context"><span class="who">${esc(view.command.userName)}</span> used <span class="cmd">${esc(view.command.line)}</span></div>`
    : view.replyTo
      ? `<div class="context"><span class="who">@${esc(view.replyTo.authorName)}</span> <span>${inline(view.replyTo.content.split('\n')[0] || 'Click to see attachment')}</span></div>`
      : '';
  const attachments = view.attachments.length
    ? `<div class="attachments">${view.attachments
      .map((a) => (a.contentType ?? '').startsWith('image/')
        ? `<div class="attachment"><img src="${esc(a.url)}" alt="${esc(a.filename)}" decoding="async"></div>`
        : `<div class="attachment"><a class="file" href="${esc(a.url)}">${esc(a.filename)}</a></div>`)
      .join('')}</div>`
    : '';
  const reactions = view.reactions.length
    ? `<div class="reactions">${view.reactions
      .map((r) => `<button type="button" class="reaction${r.userIds.includes(me) ? ' mine' : ''}" data-emoji="${esc(r.emoji)}" aria-pressed="${r.userIds.includes(me)}">
          <span class="emoji">${esc(r.emoji)}</span><span class="count">${r.userIds.length}</span></button>`)
      .join('')}</div>`
    : '';
  const reactBar = view.ephemeral || view.loading
    ? ''
    : `<div class="react-bar"><button type="button" data-add-emoji="🔁" title="React 🔁">🔁</button><button type="button" data-add-emoji="❌" title="React ❌">❌</button></div>`;
  return `${context}${avatar(view.author.id, view.author.name)}
    <div class="body">
      <div class="head"><span class="name">${esc(view.author.name)}</span>${view.author.bot ? '<span class="bot-tag">App</span>' : ''}<time datetime="${esc(view.timestamp)}">${clock(view.timestamp)}</time></div>
      ${view.loading ? `<div class="thinking">${esc(view.author.name)} is thinking</div>` : ''}
      ${view.content ? `<div class="content">${markdown(view.content)}${view.edited ? ' <span class="edited">(edited)</span>' : ''}</div>` : ''}
      ${attachments}
      ${view.embeds.map(renderEmbed).join('')}
      ${renderComponents(view.components)}
      ${reactions}
      ${view.ephemeral ? '<div class="ephemeral-note">👁 Only you can see this · <button type="button" data-dismiss>Dismiss message</button></div>' : ''}
    </div>
    ${reactBar}`;
}

function visible(view) {
  return !view.deleted && !dismissed.has(view.id) && (view.visibleTo === null || view.visibleTo === me);
}

function byId(a, b) {
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

function nearBottom() {
  const s = $('scroller');
  return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
}

function scrollToBottom() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
}

/** Puts one message in place (or takes it out), keeping the list in id order. */
function place(view) {
  const list = $('messages');
  let element = list.querySelector(`li[data-id="${view.id}"]`);
  if (!visible(view)) {
    element?.remove();
    return;
  }
  if (!element) {
    element = document.createElement('li');
    element.dataset.id = view.id;
    const after = [...list.children].find((li) => li.dataset.id && !li.dataset.notice && byId(li.dataset.id, view.id) > 0);
    list.insertBefore(element, after ?? list.querySelector('li[data-notice]'));
  }
  element.className = `message${view.ephemeral ? ' ephemeral' : ''}${view.command || view.replyTo ? ' has-context' : ''}`;
  element.dataset.author = view.author.id;
  element.dataset.ephemeral = String(view.ephemeral);
  element.innerHTML = renderMessage(view);
}

function renderNotices() {
  const list = $('messages');
  for (const li of list.querySelectorAll('li[data-notice]')) li.remove();
  for (const notice of notices.filter((n) => n.userId === me)) {
    const li = document.createElement('li');
    li.dataset.notice = 'true';
    li.className = 'message ephemeral notice';
    li.innerHTML = `${avatar(world.bot.id, world.bot.name)}<div class="body"><div class="head"><span class="name">${esc(world.bot.name)}</span><span class="bot-tag">App</span><time>${clock(notice.at)}</time></div>
      <div class="content">${esc(notice.text)}</div><div class="ephemeral-note">👁 Only you can see this</div></div>`;
    list.append(li);
  }
}

function renderAll() {
  $('messages').replaceChildren();
  for (const view of [...messages.values()].sort((a, b) => byId(a.id, b.id))) place(view);
  renderNotices();
  scrollToBottom();
}

function renderMembers() {
  const box = $('member-switch');
  box.replaceChildren();
  for (const member of world.members) {
    const button = document.createElement('button');
    button.type = 'button';
    button.className = `member${member.moderator ? ' moderator' : ''}`;
    button.setAttribute('role', 'radio');
    button.setAttribute('aria-checked', String(member.id === me));
    button.dataset.memberId = member.id;
    button.dataset.name = member.name;
    button.innerHTML = `${avatar(member.id, member.name)}<span>${esc(member.name)}</span><span class="role">${member.moderator ? 'moderator' : 'member'}</span>`;
    button.addEventListener('click', () => switchTo(member.id));
    box.append(button);
  }
  document.body.dataset.me = me;
}

function switchTo(id) {
  me = id;
  localStorage.setItem(MEMBER_KEY, id);
  renderMembers();
  renderAll();
  $('box').focus();
}

// ---- Actions ---------------------------------------------------------------------------------------------------

async function post(path, body) {
  const response = await fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const json = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(json.error ?? `${response.status} ${response.statusText}`);
  return json;
}

function showError(text) {
  const box = $('composer-error');
  box.textContent = text ?? '';
  box.hidden = !text;
}

$('messages').addEventListener('click', async (event) => {
  const target = event.target instanceof Element ? event.target : null;
  const li = target?.closest('li[data-id]');
  if (!li) return;
  const messageId = li.dataset.id;
  try {
    const reaction = target.closest('.reaction');
    const add = target.closest('[data-add-emoji]');
    const button = target.closest('button.component-button');
    const spoiler = target.closest('.spoiler');
    if (reaction) {
      const mine = reaction.classList.contains('mine');
      await post('/playground/reaction', { userId: me, messageId, emoji: reaction.dataset.emoji, add: !mine });
    } else if (add) {
      await post('/playground/reaction', { userId: me, messageId, emoji: add.dataset.addEmoji, add: true });
    } else if (button) {
      await post('/playground/button', { userId: me, messageId, customId: button.dataset.customId });
    } else if (target.closest('[data-dismiss]')) {
      dismissed.add(messageId);
      li.remove();
    } else if (spoiler) {
      spoiler.classList.add('shown');
    }
    showError('');
  } catch (error) {
    showError(error.message);
  }
});

// ---- The message box: commands, options and hints ------------------------------------------------------------

/** The command, chosen subcommands and leaf options for what is typed so far. */
function readLine(text) {
  const m = /^\/(\S*)(\s?)(.*)$/s.exec(text);
  if (!m) return undefined;
  const command = world.commands.find((c) => c.name === m[1].toLowerCase());
  if (!command || !m[2]) return { prefix: m[1].toLowerCase(), command: undefined };
  let declared = command.options ?? [];
  let rest = m[3];
  const path = [command.name];
  while (declared.some((o) => o.type === 1 || o.type === 2)) {
    const w = /^(\S*)(\s?)(.*)$/s.exec(rest);
    const chosen = declared.find((o) => (o.type === 1 || o.type === 2) && o.name === w[1].toLowerCase());
    if (!chosen || !w[2]) return { command, path, choices: declared.filter((o) => o.type === 1 || o.type === 2), partial: w[1] };
    path.push(chosen.name);
    declared = chosen.options ?? [];
    rest = w[3];
  }
  const given = [...rest.matchAll(/(?:^|\s)([\w-]+):/g)].map((x) => x[1].toLowerCase());
  const current = /(?:^|\s)([\w-]+):([^:]*)$/.exec(rest);
  return { command, path, options: declared, given, current: current?.[1].toLowerCase(), currentValue: current?.[2] ?? '', rest };
}

let suggestionItems = [];
let active = 0;

function renderSuggestions() {
  const box = $('suggestions');
  const text = $('box').value;
  const line = world && text.startsWith('/') ? readLine(text) : undefined;
  suggestionItems = [];
  let html = '';
  if (line && !line.command) {
    const found = world.commands.filter((c) => c.name.startsWith(line.prefix));
    suggestionItems = found.map((c) => ({ insert: `/${c.name} `, label: `/${c.name}`, desc: c.description }));
    html = `<div class="title">Commands</div>`;
  } else if (line?.choices) {
    const found = line.choices.filter((o) => o.name.startsWith(line.partial.toLowerCase()));
    suggestionItems = found.map((o) => ({ insert: `/${[...line.path, o.name].join(' ')} `, label: o.name, desc: o.description }));
    html = `<div class="title">/${esc(line.path.join(' '))}</div>`;
  } else if (line?.options) {
    const usage = line.options
      .map((o) => {
        const cls = ['opt', o.required ? 'required' : '', line.given.includes(o.name) ? 'given' : '', line.current === o.name ? 'current' : ''].join(' ');
        return `<span class="${cls}" title="${esc(o.description)}">${esc(o.name)}:</span>`;
      })
      .join('');
    html = `<div class="title">/${esc(line.path.join(' '))}</div>${usage ? `<div class="usage">${usage}</div>` : '<div class="usage">no options: press Enter</div>'}`;
    const current = line.options.find((o) => o.name === line.current);
    if (current?.choices?.length) {
      const partial = line.currentValue.trim().toLowerCase();
      const base = text.slice(0, text.length - line.currentValue.length);
      suggestionItems = current.choices
        .filter((c) => String(c.value).toLowerCase().startsWith(partial) || c.name.toLowerCase().startsWith(partial))
        .map((c) => ({ insert: `${base}${c.value} `, label: c.name, desc: String(c.value) === c.name ? '' : String(c.value) }));
    } else if (current) {
      html += `<div class="usage"><b>${esc(current.name)}</b> — ${esc(current.description)}</div>`;
    } else {
      const next = line.options.filter((o) => !line.given.includes(o.name));
      const sep = text.endsWith(' ') ? '' : ' ';
      suggestionItems = next.map((o) => ({ insert: `${text}${sep}${o.name}:`, label: `${o.name}:`, desc: `${o.required ? '(required) ' : ''}${o.description}` }));
    }
  }
  active = Math.min(active, Math.max(0, suggestionItems.length - 1));
  html += suggestionItems
    .map((s, i) => `<div class="suggestion${i === active ? ' active' : ''}" role="option" data-index="${i}"><span class="label">${esc(s.label)}</span><span class="desc">${esc(s.desc)}</span></div>`)
    .join('');
  box.innerHTML = html;
  box.hidden = html === '';
}

function accept(index) {
  const item = suggestionItems[index];
  if (!item) return false;
  $('box').value = item.insert;
  active = 0;
  renderSuggestions();
  $('box').focus();
  return true;
}

$('suggestions').addEventListener('mousedown', (event) => {
  const item = event.target instanceof Element ? event.target.closest('.suggestion') : null;
  if (!item) return;
  event.preventDefault();
  accept(Number(item.dataset.index));
});

$('box').addEventListener('input', () => {
  active = 0;
  showError('');
  renderSuggestions();
});

$('box').addEventListener('keydown', (event) => {
  if (event.key === 'Tab' && suggestionItems.length) {
    event.preventDefault();
    accept(active);
  } else if (event.key === 'ArrowDown' && suggestionItems.length) {
    event.preventDefault();
    active = (active + 1) % suggestionItems.length;
    renderSuggestions();
  } else if (event.key === 'ArrowUp' && suggestionItems.length) {
    event.preventDefault();
    active = (active - 1 + suggestionItems.length) % suggestionItems.length;
    renderSuggestions();
  } else if (event.key === 'Escape') {
    $('suggestions').hidden = true;
  }
});

$('composer').addEventListener('submit', async (event) => {
  event.preventDefault();
  const box = $('box');
  const text = box.value.trim();
  if (!text) return;
  try {
    await post('/playground/command', { userId: me, text });
    box.value = '';
    showError('');
    $('suggestions').hidden = true;
    scrollToBottom();
  } catch (error) {
    $('suggestions').hidden = true;
    showError(error.message);
  }
});

// ---- Live updates ----------------------------------------------------------------------------------------------

function connect() {
  const status = $('connection');
  const events = new EventSource('/playground/events');
  events.addEventListener('open', () => {
    status.dataset.state = 'live';
    status.textContent = 'live';
  });
  events.addEventListener('error', () => {
    status.dataset.state = 'lost';
    status.textContent = 'reconnecting…';
  });
  events.addEventListener('snapshot', (event) => {
    messages.clear();
    for (const view of JSON.parse(event.data).messages) messages.set(view.id, view);
    renderAll();
    document.body.dataset.ready = 'true';
  });
  events.addEventListener('message', (event) => {
    const view = JSON.parse(event.data);
    const stick = nearBottom();
    messages.set(view.id, view);
    place(view);
    if (stick) scrollToBottom();
  });
  events.addEventListener('notice', (event) => {
    notices.push(JSON.parse(event.data));
    renderNotices();
    scrollToBottom();
  });
}

async function main() {
  world = await (await fetch('/playground/state')).json();
  if (!world.members.some((m) => m.id === me)) me = world.members[0].id;
  $('guild-name').textContent = world.guild.name;
  for (const id of ['channel-name', 'channel-name-side', 'channel-name-welcome']) $(id).textContent = world.channel.name;
  $('box').placeholder = `Message #${world.channel.name} — type / for commands`;
  renderMembers();
  connect();
}

main().catch((error) => showError(`The playground could not start: ${error.message}`));
