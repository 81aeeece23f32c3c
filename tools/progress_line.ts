/**
 * Progress of a long operation (kumoctl --wait, kumomergedb): on a terminal one line redrawn in
 * place (`\r`, then erase to the end of the line); on a pipe or file one line per change, so a
 * log holds each step once and no control characters.
 */

const ERASE_TO_END_OF_LINE = "\x1b[K";

export class ProgressLine {
  readonly #write: (text: string) => void;
  readonly #terminal: boolean;
  #last: string | undefined;
  /** A line is drawn in place and not yet ended. */
  #drawn = false;

  constructor(write: (text: string) => void, terminal: boolean) {
    this.#write = write;
    this.#terminal = terminal;
  }

  get terminal(): boolean {
    return this.#terminal;
  }

  /** Shows `text` unless it is what is already shown. */
  show(text: string): void {
    if (text === this.#last) return;
    this.#last = text;
    if (this.#terminal) {
      this.#write(`\r${text}${ERASE_TO_END_OF_LINE}`);
      this.#drawn = true;
    } else {
      this.#write(`${text}\n`);
    }
  }

  /**
   * Ends the line drawn in place: `keep` leaves it on screen (a newline), otherwise it is erased
   * so that what follows starts on a clean line. Nothing to do on a pipe.
   */
  end(options: { keep: boolean }): void {
    if (this.#terminal && this.#drawn) {
      this.#write(options.keep ? "\n" : `\r${ERASE_TO_END_OF_LINE}`);
    }
    this.#drawn = false;
    this.#last = undefined;
  }
}

/** `[#######-------------]  700/2000 records`: done out of total as a bar of `widthChars`. */
export function progressBar(done: number, total: number, widthChars = 30): string {
  const fraction = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(fraction * widthChars);
  return `[${"#".repeat(filled)}${"-".repeat(widthChars - filled)}]  ${done}/${total} records`;
}
