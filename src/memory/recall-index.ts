// What both memory adapters recall from: a term index per principal, and each session's latest turns.

/** Words too common to tell items apart; a query of only these finds nothing. */
const stopWords = new Set(
  `a about above after again against all am an and any are as at be because been before being below between both but by can could did do does doing down during each few for from further had has have having he her here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not now of off on once only or other our ours ourselves out over own same she should so some such than that the their theirs them themselves then there these they this those through to too under until up very was we were what when where which while who whom why will with would you your yours yourself yourselves`.split(' '),
);

/** How many distinct terms of one item are indexed: its first ones (a long answer does not flood the index). */
export const MAX_TERMS_PER_ITEM = 200;

/** How many items one recall scores at most, however many match: the newest matches of its rarest terms. */
export const MAX_SCORED_ITEMS = 200;
/** A recall takes the items of its next rarest term as candidates while it has fewer than this many per result asked for (and fewer than `MIN_CANDIDATES`). */
const CANDIDATES_PER_RESULT = 4;
const MIN_CANDIDATES = 20;

const k1 = 1.2;
const b = 0.75;
/** A posting packs an item id and its term count (up to 7): `id * 8 + count`. */
const countBits = 8;

/** Whether a character beyond ASCII is a letter or a digit (of any script). */
const isWordBeyondAscii = (character: string) => /[\p{L}\p{N}]/u.test(character);

/**
 * The terms of a text and how often each occurs: lower-cased runs of letters and digits (of any
 * script), stop words dropped, a plural's final s folded (so "tyres" finds "tyre"); at most
 * `MAX_TERMS_PER_ITEM`. On the path of every recall and write-back: ASCII is told apart by its
 * codes, without a regular expression.
 */
export function termsOf(text: string): Map<string, number> {
  const terms = new Map<string, number>();
  const lower = text.toLowerCase();
  let start = -1;
  for (let at = 0; at <= lower.length; at++) {
    const code = at < lower.length ? lower.charCodeAt(at) : 32;
    const inWord = (code >= 97 && code <= 122) || (code >= 48 && code <= 57) || (code >= 128 && isWordBeyondAscii(String.fromCodePoint(lower.codePointAt(at)!)));
    if (inWord) {
      if (start < 0) start = at;
      // A character beyond the basic plane takes two code units: both belong to the word.
      if (code >= 0xd800 && code <= 0xdbff) at++;
      continue;
    }
    if (start < 0) continue;
    const word = lower.slice(start, at);
    start = -1;
    if (stopWords.has(word)) continue;
    const term = word.length > 3 && word.endsWith('s') && !word.endsWith('ss') ? word.slice(0, -1) : word;
    const count = terms.get(term);
    if (count !== undefined) terms.set(term, count + 1);
    else if (terms.size < MAX_TERMS_PER_ITEM) terms.set(term, 1);
  }
  return terms;
}

/** What recalls have cost so far: the proof, for tests, that a recall touches its candidates only. */
export interface RecallStats {
  recalls: number;
  /** Items scored, over all recalls. */
  scored: number;
  /** Postings read, over all recalls (each a candidate considered, or a look-up of one in a term's list). */
  postingsRead: number;
}

/** One principal's items: a sorted list of postings per term, and their lengths in terms. */
interface PrincipalTerms {
  postings: Map<string, number[]>;
  items: number;
  totalLength: number;
}

/** A session's latest turns, oldest first: item ids and their times. */
interface SessionTurns {
  ids: number[];
  times: number[];
}

/** What an index needs of an item; `id`s are given in ascending order, one per item. */
export interface IndexedItem {
  id: number;
  principalId: string;
  sessionId: string | null;
  createdAt: string;
  /** What recall matches the query against. */
  text: string;
}

export interface RecallIndex {
  add(item: IndexedItem): void;
  /** The principal's items that best match the query (BM25), best first, newer first among equals. */
  search(principalId: string, query: string, limit: number): { id: number; score: number }[];
  /** The ids of the session's latest turns (at most `historyTurns`), oldest first. */
  history(principalId: string, sessionId: string): readonly number[];
  /** What its searches cost (the object given as `stats`, if one was: several indexes may add to one). */
  readonly stats: RecallStats;
}

/**
 * The last place at or below `from` in an ascending list of postings whose item id is `id` or
 * lower (-1 when there is none): a galloping search downwards, then a binary one.
 */
function atOrBelow(list: readonly number[], id: number, from: number): number {
  const limit = (id + 1) * countBits;
  if (from < 0 || list[from]! < limit) return from;
  let high = from;
  let low = from - 1;
  for (let step = 1; low >= 0 && list[low]! >= limit; step *= 2) {
    high = low;
    low -= step;
  }
  low = Math.max(low, -1);
  while (high - low > 1) {
    const middle = (low + high) >>> 1;
    if (list[middle]! >= limit) high = middle;
    else low = middle;
  }
  return low;
}

/**
 * An in-memory index of one tenant's items. A search looks up each query term's list of postings
 * (one per principal), takes as candidates the items of its rarest term (the newest, at most
 * `MAX_SCORED_ITEMS`), and of the next rarest ones while there are few, and scores only those: its
 * cost follows the limit and the matches of the rarest terms, not the tenant's history. A session's turns are kept by the session, the latest
 * `historyTurns` of them in time order.
 * @example
 * const index = createRecallIndex({ historyTurns: 10 });
 * index.add({ id: 0, principalId: 'u', sessionId: 's', createdAt, text: 'capital of France → Paris' });
 * index.search('u', 'France', 5); // [{ id: 0, score: … }]
 */
export function createRecallIndex(options: { historyTurns: number; stats?: RecallStats }): RecallIndex {
  const byPrincipal = new Map<string, PrincipalTerms>();
  const sessions = new Map<string, SessionTurns>();
  /** Each item's length in terms, by id. */
  const lengths: number[] = [];
  const stats: RecallStats = options.stats ?? { recalls: 0, scored: 0, postingsRead: 0 };
  const sessionKey = (principalId: string, sessionId: string) => `${principalId}\u0000${sessionId}`;

  function addTurn(item: IndexedItem) {
    if (item.sessionId === null || options.historyTurns === 0) return;
    const key = sessionKey(item.principalId, item.sessionId);
    let turns = sessions.get(key);
    if (!turns) sessions.set(key, (turns = { ids: [], times: [] }));
    const time = Date.parse(item.createdAt);
    // Write-backs mostly arrive in order: the place is found from the end.
    let at = turns.times.length;
    while (at > 0 && turns.times[at - 1]! > time) at--;
    if (at === 0 && turns.ids.length >= options.historyTurns) return; // older than every turn kept
    turns.ids.splice(at, 0, item.id);
    turns.times.splice(at, 0, time);
    if (turns.ids.length > options.historyTurns) {
      turns.ids.shift();
      turns.times.shift();
    }
  }

  return {
    stats,
    add(item) {
      const terms = termsOf(item.text);
      let length = 0;
      let principal = byPrincipal.get(item.principalId);
      if (!principal) byPrincipal.set(item.principalId, (principal = { postings: new Map(), items: 0, totalLength: 0 }));
      for (const [term, count] of terms) {
        length += count;
        const posting = item.id * countBits + Math.min(count, countBits - 1);
        const list = principal.postings.get(term);
        if (list) list.push(posting);
        else principal.postings.set(term, [posting]);
      }
      lengths[item.id] = length;
      principal.items++;
      principal.totalLength += length;
      addTurn(item);
    },

    search(principalId, query, limit) {
      stats.recalls++;
      const principal = byPrincipal.get(principalId);
      if (!principal || limit === 0) return [];
      const lists: number[][] = [];
      for (const term of termsOf(query).keys()) {
        const list = principal.postings.get(term);
        if (list) lists.push(list);
      }
      if (lists.length === 0) return [];
      lists.sort((x, y) => x.length - y.length);
      // Candidates: the items of the rarest term (its newest, up to the cap), then of the next rarest
      // while there are fewer than a few times the limit.
      const cap = Math.max(MAX_SCORED_ITEMS, limit);
      const enough = Math.min(cap, Math.max(CANDIDATES_PER_RESULT * limit, MIN_CANDIDATES));
      const candidates = new Set<number>();
      for (const list of lists) {
        for (let at = list.length - 1, read = 0; at >= 0 && read < cap && candidates.size < cap; at--, read++) {
          candidates.add(Math.floor(list[at]! / countBits));
          stats.postingsRead++;
        }
        if (candidates.size >= enough) break;
      }
      const ids = [...candidates].sort((x, y) => y - x);
      const scores = new Float64Array(ids.length);
      const averageLength = principal.totalLength / principal.items || 1;
      for (const list of lists) {
        const idf = Math.log(1 + (principal.items - list.length + 0.5) / (list.length + 0.5));
        let cursor = list.length - 1;
        for (let index = 0; index < ids.length && cursor >= 0; index++) {
          const id = ids[index]!;
          const at = atOrBelow(list, id, cursor);
          stats.postingsRead++;
          cursor = at;
          if (at < 0 || Math.floor(list[at]! / countBits) !== id) continue;
          const count = list[at]! % countBits;
          scores[index]! += (idf * (count * (k1 + 1))) / (count + k1 * (1 - b + (b * lengths[id]!) / averageLength));
          cursor = at - 1;
        }
      }
      stats.scored += ids.length;
      const order = ids.map((_, index) => index).sort((x, y) => scores[y]! - scores[x]! || ids[y]! - ids[x]!);
      return order.slice(0, limit).map((index) => ({ id: ids[index]!, score: scores[index]! }));
    },

    history: (principalId, sessionId) => sessions.get(sessionKey(principalId, sessionId))?.ids ?? [],
  };
}
