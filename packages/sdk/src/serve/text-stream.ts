// Generated tokens → text deltas, with OpenAI's stop strings: the text ends before the first stop
// string (which is not returned), and a delta never contains text that might still turn out to be the
// start of a stop string or half of a UTF-8 character (held back until the next token decides).
export interface Detokenizer {
  decode(ids: ArrayLike<number>, o?: { skipSpecialTokens?: boolean }): string;
}

export class TextStream {
  private readonly ids: number[] = [];
  private emitted = 0;
  private text = '';
  /** Set when a stop string matched: the final text is cut there. */
  stopped = false;

  constructor(private readonly tok: Detokenizer, private readonly stops: readonly string[]) {}

  /** Adds a token; returns the text that is now certain. */
  push(id: number): string {
    this.ids.push(id);
    this.text = this.tok.decode(this.ids, { skipSpecialTokens: true });
    let cut = -1;
    for (const s of this.stops) {
      const at = this.text.indexOf(s, Math.max(0, this.emitted - s.length + 1));
      if (at >= 0 && (cut < 0 || at < cut)) cut = at; // the earliest stop string wins
    }
    if (cut >= 0) {
      this.text = this.text.slice(0, cut);
      this.stopped = true;
    }
    if (this.stopped) return this.take(this.text.length);
    let safe = this.text.length;
    // An unfinished UTF-8 sequence at the end decodes to one U+FFFD that the next byte may complete.
    if (safe > this.emitted && this.text.charCodeAt(safe - 1) === 0xfffd) safe--;
    let hold = 0;
    for (const s of this.stops) {
      for (let k = Math.min(s.length - 1, safe - this.emitted); k > hold; k--) {
        if (this.text.endsWith(s.slice(0, k), safe)) {
          hold = k;
          break;
        }
      }
    }
    return this.take(safe - hold);
  }

  /** Everything not yet emitted (at the end of generation). */
  flush(): string {
    return this.take(this.text.length);
  }

  /** The full text so far (cut at a stop string). */
  get full(): string {
    return this.text;
  }

  private take(upTo: number): string {
    if (upTo <= this.emitted) return '';
    const d = this.text.slice(this.emitted, upTo);
    this.emitted = upTo;
    return d;
  }
}
