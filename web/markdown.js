// markdown.js - the chat page's markdown-safe rendering (app.js): paragraphs,
// ``` fenced code, inline `code` and **bold**, built as DOM nodes from text
// (model output never becomes HTML). Rendering again as a message streams
// in costs what arrived, not the whole message (see renderMarkdown).

function textElement(tag, text) {
  const e = document.createElement(tag);
  e.textContent = text;
  return e;
}

// Inline `code` and **bold** inside a paragraph; everything else is text.
function renderInline(parent, text) {
  // split() puts the matches (the capturing group) at the odd places
  text.split(/(`[^`\n]+`|\*\*[^*\n]+\*\*)/).forEach((part, i) => {
    if (!part) return;
    if (i % 2 === 0) appendText(parent, part);
    else if (part.startsWith('`')) parent.append(textElement('code', part.slice(1, -1)));
    else parent.append(textElement('strong', part.slice(2, -2)));
  });
}

// The blocks of a text: paragraphs ('p', inline markup inside) and ```
// fenced code ('pre'; an unclosed fence, while streaming, is code too), each
// with the text it shows.
function markdownBlocks(text) {
  const blocks = [];
  text.split('```').forEach((part, i) => {
    if (i % 2 === 1) {
      const nl = part.indexOf('\n');
      const code = nl >= 0 && /^[\w+#.-]*$/.test(part.slice(0, nl)) ? part.slice(nl + 1) : part;
      blocks.push({ kind: 'pre', text: code.replace(/\n$/, '') });
      return;
    }
    for (const para of part.split(/\n{2,}/)) {
      if (para.trim()) blocks.push({ kind: 'p', text: para.replace(/^\n+|\n+$/g, '') });
    }
  });
  return blocks;
}

function blockNode(b) {
  if (b.kind === 'pre') {
    const pre = document.createElement('pre');
    pre.append(textElement('code', b.text));
    return pre;
  }
  const p = document.createElement('p');
  renderInline(p, b.text);
  return p;
}

// Appends `more` to the text a node ends with (a Text node it already has
// keeps its layout: the browser lays out only what was added).
export function appendText(parent, more) {
  if (parent.lastChild?.nodeType === Node.TEXT_NODE) parent.lastChild.appendData(more);
  else parent.append(more);
}

const renderedBlocks = new WeakMap(); // container -> [{ kind, text, node }] it shows

// Renders text into container as blocks. While a message streams in, only
// its last block grows: the blocks before keep their nodes, and text added
// to the last one is appended to it, so a frame costs what arrived, not the
// whole message.
export function renderMarkdown(container, text) {
  const blocks = markdownBlocks(text);
  const old = renderedBlocks.get(container) ?? [];
  let same = 0;
  while (same < old.length && same < blocks.length && old[same].kind === blocks[same].kind && old[same].text === blocks[same].text) same++;
  const shown = old.slice(0, same);
  // the first changed block grows in place when only plain text was added
  // to it (markup, ` or *, may change what came before)
  const prev = old[same];
  const next = blocks[same];
  let more = null;
  if (prev && next && prev.kind === next.kind && next.text.startsWith(prev.text)) {
    more = next.text.slice(prev.text.length);
    if (next.kind === 'p' && /[`*]/.test(more)) more = null;
  }
  for (const b of old.slice(same + (more === null ? 0 : 1))) b.node.remove();
  blocks.slice(same).forEach((b, i) => {
    if (i === 0 && more !== null) {
      appendText(b.kind === 'pre' ? prev.node.firstChild : prev.node, more);
      shown.push({ ...b, node: prev.node });
      return;
    }
    const node = blockNode(b);
    container.append(node);
    shown.push({ ...b, node });
  });
  renderedBlocks.set(container, shown);
}
