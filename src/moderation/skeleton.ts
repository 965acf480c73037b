/**
 * The skeleton of a text: what it looks like, not how it is encoded. Banned-word matching runs on it, so a
 * Cyrillic "а", a fullwidth "ａ", "a" with a combining stroke and "a" hidden among zero-width characters all read
 * as "a". Everything here is linear in the text and uses no backtracking regex.
 *
 * Look-alike letters follow Unicode Technical Standard #39 (Unicode Security Mechanisms), confusables.txt
 * (https://www.unicode.org/Public/security/latest/confusables.txt): the Cyrillic, Greek and Latin-variant entries
 * whose prototype is a Latin letter. Fullwidth, mathematical and circled letters need no table: NFKD already
 * turns them into ASCII. `foldConfusable` is the one place a package such as `unhomoglyph` would plug in.
 */

/** Latin letter ← the look-alikes folded to it. Lowercase keys; uppercase only where its letter differs. */
const LOOK_ALIKES: Record<string, string> = {
  // TR39: Cyrillic а, Greek α, Latin alpha ɑ, small capital ᴀ, APL alpha ⍺.
  a: 'аαɑᴀ⍺',
  // TR39: Cyrillic Ь/В (capitals; their lowercase ь/в too), Greek Β, small capital ʙ, Ƅ/ƅ; β (TR39: ß) as b.
  b: 'ьвβʙƅ',
  // TR39: Cyrillic с, Greek lunate sigma ϲ, small capital ᴄ; final sigma ς (not in TR39) as c.
  c: 'сϲᴄς',
  // TR39: Cyrillic ԁ, small capital ᴅ, d with stroke đ (d̵), ɖ; eth ð (TR39: ∂̵) as d.
  d: 'ԁᴅđɖð',
  // TR39: Cyrillic е/ҽ, small capital ᴇ, estimated ℮; Greek ε, Cyrillic є, Latin ɛ (TR39: ꞓ) as e.
  e: 'еҽᴇ℮εєɛ',
  f: 'ꜰƒ',
  g: 'ɡɢԍ',
  // TR39: Cyrillic һ, Н (capital; lowercase н too), small capital ʜ, h with stroke ħ/ћ.
  h: 'һнʜħћ',
  // TR39: Cyrillic і/ӏ, Greek ι, dotless ı, small capital ɪ, iota ɩ, ɨ.
  i: 'іӏιıɪɩɨ',
  j: 'јϳᴊ',
  // TR39: Cyrillic к/қ, Greek κ/ϰ, small capital ᴋ, kra ĸ.
  k: 'кқκϰᴋĸ',
  // TR39: small capital ʟ, dental click ǀ, l with stroke ł.
  l: 'ʟǀł',
  // TR39: Cyrillic М (capital; lowercase м, TR39 rn, too), Greek Μ (below), small capital ᴍ.
  m: 'мᴍ',
  // TR39: Cyrillic п, Greek η (n̩) and π, small capital ɴ.
  n: 'пηπɴ',
  // TR39: Cyrillic о/ө, Greek ο/σ, small capitals ᴏ/ᴑ, o with stroke ø/ɵ, ideographic zero 〇.
  o: 'оөοσᴏᴑøɵ〇',
  p: 'рρϱᴘ',
  q: 'ԛ',
  // TR39: Cyrillic г, small capitals ʀ/ᴦ.
  r: 'гʀᴦ',
  s: 'ѕꜱƽʂ',
  t: 'тτᴛŧ',
  // TR39: Greek υ, Cyrillic ц, small capital ᴜ, ʋ; Greek μ (not in TR39) as u.
  u: 'υцᴜʋμ',
  v: 'νѵᴠ',
  // TR39: Cyrillic ԝ/ѡ, small capital ᴡ, turned m ɯ (vv); Greek ω (not in TR39) as w.
  w: 'ԝѡᴡɯω',
  // TR39: Cyrillic х/ҳ, multiplication sign ×; Greek χ (TR39: Χ only) as x.
  x: 'хҳ×χ',
  // TR39: Cyrillic у/ү, Greek γ, small capital ʏ, gamma ɣ.
  y: 'уүγʏɣ',
  z: 'ᴢƶ',
};

/**
 * Uppercase letters whose lowercase is a different look-alike: Greek Η is H but η is n, Ν is N but ν is v, Σ
 * (TR39: Ʃ) is written for E but σ is o.
 */
const UPPERCASE_LOOK_ALIKES: Record<string, string> = { Η: 'h', Ν: 'n', Υ: 'y', Μ: 'm', Ζ: 'z', Χ: 'x', Σ: 'e' };

/** Letters NFKD leaves whole that read as two Latin letters. */
const LIGATURES: Record<string, string> = { ß: 'ss', æ: 'ae', œ: 'oe' };

const FOLD = new Map<string, string>();
for (const [latin, sources] of Object.entries(LOOK_ALIKES)) for (const source of sources) FOLD.set(source, latin);
for (const [source, latin] of Object.entries({ ...UPPERCASE_LOOK_ALIKES, ...LIGATURES })) FOLD.set(source, latin);

// Capital I and its look-alikes read as i, but may stand for l: "heII".
const CAPITAL_I = new Set(['I', 'Ι', 'І', 'Ӏ']);

/**
 * Leetspeak: a digit or symbol → the letters it can stand for. The first is its reading in a stored entry.
 * A symbol reads as a letter only inside a word; see `EDGE_PUNCTUATION`.
 */
export const LEET: Readonly<Record<string, string>> = {
  '0': 'o',
  '1': 'il',
  '2': 'z',
  '3': 'e',
  '4': 'a',
  '5': 's',
  '6': 'gb',
  '7': 't',
  '8': 'b',
  '9': 'g',
  '@': 'a',
  $: 's',
  '!': 'il',
  '|': 'li',
  '¡': 'i',
  '+': 't',
  '€': 'e',
  '¢': 'c',
  '§': 's',
};

// "!" and "|" end sentences and separate lists more often than they spell i: at a word's edge they are punctuation.
const EDGE_PUNCTUATION = new Set(['!', '|', '¡']);

// Invisible characters dropped before anything else, so they neither split nor hide a word: combining marks,
// format characters (zero-width space/joiners, soft hyphen, direction marks, BOM), every default-ignorable code
// point (Hangul fillers U+115F, U+1160, U+3164, U+FFA0, variation selectors, tags), and the braille blank U+2800.
// One character class, no quantifier inside: linear.
const HIDDEN = /[\p{M}\p{Cf}\p{Default_Ignorable_Code_Point}\u2800]/gu;

// Marks that join the pieces of one word ("a.s.s", "ass-hole", "a_s_s"); other punctuation and spaces split words.
const JOINER = /[\p{Pd}\p{Pc}.*'`~^=:\/\\\u00B7\u2018\u2019\u2022\u2027\u2219\u22C5]/u;
const LETTER = /\p{L}/u;
const NUMBER = /\p{N}/u;

/**
 * `text` after NFKD, with marks and invisible characters removed. The one place text is decomposed, so entries
 * and prompts go through the same steps.
 */
export function visibleCodePoints(text: string): string {
  return text.normalize('NFKD').replace(HIDDEN, '');
}

/**
 * A visible code point folded to the lowercase Latin letter(s) it looks like, or lowercased if it looks like
 * none: "А" (Cyrillic) → "a", "Η" (Greek) → "h", "ß" → "ss", "Ж" → "ж". Folding the result again changes nothing.
 */
export function foldConfusable(char: string): string {
  const direct = FOLD.get(char);
  if (direct !== undefined) return direct;
  const code = char.codePointAt(0) ?? 0;
  // Negative circled/squared letters 🅐 🅰 and regional indicators 🇦 have no decomposition: A–Z by offset.
  if (code >= 0x1f150 && code <= 0x1f169) return String.fromCharCode(97 + code - 0x1f150);
  if (code >= 0x1f170 && code <= 0x1f189) return String.fromCharCode(97 + code - 0x1f170);
  if (code >= 0x1f1e6 && code <= 0x1f1ff) return String.fromCharCode(97 + code - 0x1f1e6);
  const lower = char.toLowerCase();
  return FOLD.get(lower) ?? lower.replace(HIDDEN, '');
}

/** A text's skeleton as one string, separators kept: "ＣＡＦÉ\u200B Аss" → "cafe ass". No leetspeak. */
export function skeletonText(text: string): string {
  let out = '';
  for (const char of visibleCodePoints(text)) out += foldConfusable(char);
  return out;
}

/** One character of a word's skeleton. */
export interface Glyph {
  /** The folded character itself: a lowercase letter, a digit or a leet symbol. */
  char: string;
  /** Letters it may also stand for: "il" for "1", "s" for "$", "l" for a capital I; "" for most letters. */
  alts: string;
  kind: 'letter' | 'digit' | 'symbol';
}

/** A word of the skeleton: glyphs between separators. */
export interface Token {
  glyphs: Glyph[];
  /** Whether a space or punctuation (not a joiner such as "." "-" "_") came before it. True for the first. */
  spaceBefore: boolean;
  /** Whether every glyph is a digit: a number, where leetspeak does not apply ("455" is not "ass"). */
  digitsOnly: boolean;
}

/**
 * Split a text into skeleton words. "Ａ.$.$ hole!" → `A`, `$`, `$` (joined by dots), then `hole` after a space;
 * the trailing "!" is punctuation. Linear in the length of `text`.
 */
export function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let glyphs: Glyph[] = [];
  let spaceBefore = true;

  const flush = () => {
    let start = 0;
    let end = glyphs.length;
    while (start < end && EDGE_PUNCTUATION.has(glyphs[start].char)) start++;
    while (end > start && EDGE_PUNCTUATION.has(glyphs[end - 1].char)) end--;
    if (start < end) {
      const kept = start === 0 && end === glyphs.length ? glyphs : glyphs.slice(start, end);
      tokens.push({ glyphs: kept, spaceBefore, digitsOnly: kept.every((glyph) => glyph.kind === 'digit') });
      spaceBefore = false;
    }
    glyphs = [];
  };

  for (const raw of visibleCodePoints(text)) {
    const capitalI = CAPITAL_I.has(raw);
    for (const char of foldConfusable(raw)) {
      const leet = LEET[char];
      if (LETTER.test(char)) {
        glyphs.push({ char, alts: capitalI ? 'l' : '', kind: 'letter' });
      } else if (NUMBER.test(char)) {
        glyphs.push({ char, alts: leet ?? '', kind: 'digit' });
      } else if (leet !== undefined) {
        glyphs.push({ char, alts: leet, kind: 'symbol' });
      } else {
        flush();
        if (!JOINER.test(char)) spaceBefore = true;
      }
    }
  }
  flush();
  return tokens;
}
