import { checkCallbackUrl } from './callback-target.ts';
import type { CallbackSettings } from './callback-settings.ts';

/** What the gateway asks of callbacks when it accepts an invocation. */
export class Callbacks {
  readonly settings: CallbackSettings;

  constructor(settings: CallbackSettings) {
    this.settings = settings;
  }

  /** The URL as it will be called, or InvalidInputError (400) when the allow-list does not grant it. */
  check(url: string): string {
    return checkCallbackUrl(url, this.settings.allow).href;
  }
}
