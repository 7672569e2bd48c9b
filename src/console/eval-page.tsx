import { EVAL_LIMITS, EvalLanguage, type EvalResult } from '../schemas/eval.ts';
import { ms } from './format.ts';

export interface EvalForm {
  language: EvalLanguage;
  code: string;
  stdin: string;
  timeoutMs: number;
}

export const DEFAULT_EVAL_FORM: EvalForm = { language: 'javascript', code: '1 + 1', stdin: '', timeoutMs: EVAL_LIMITS.defaultTimeoutMs };

export interface EvalPageProps {
  available: boolean;
  form: EvalForm;
  result?: EvalResult;
  /** The request was refused before it ran (invalid input, node full...). */
  failure?: { code: string; message: string };
}

function Output({ title, id, text, truncated }: { title: string; id: string; text: string; truncated: boolean }) {
  return (
    <>
      <h3>
        {title}
        {truncated ? ' (truncated)' : ''}
      </h3>
      {text === '' ? <p class="muted">empty</p> : <pre id={id}>{text}</pre>}
    </>
  );
}

/** Page 5: run a snippet through the eval service (POST /v1/eval's own code path) and see what it did. */
export function EvalPage({ available, form, result, failure }: EvalPageProps) {
  return (
    <>
      <h1>Eval playground</h1>
      {!available && (
        <p class="notice">
          Evaluation is off on this gateway: start it with <code>SNAPFN_EVAL=1</code> to build the eval templates.
        </p>
      )}
      <form method="post" action="/console/eval" class="eval">
        <div class="row">
          <label>
            Language
            <select name="language" id="eval-language">
              {EvalLanguage.options.map((l) => (
                <option value={l} selected={l === form.language}>
                  {l}
                </option>
              ))}
            </select>
          </label>
          <label>
            Timeout (ms)
            <input type="number" name="timeoutMs" min="100" max={String(EVAL_LIMITS.maxTimeoutMs)} step="100" value={String(form.timeoutMs)} />
          </label>
        </div>
        <label class="block">
          Code
          <textarea name="code" id="eval-code" rows={10} spellcheck={false} required>
            {form.code}
          </textarea>
        </label>
        <label class="block">
          stdin
          <textarea name="stdin" rows={2} spellcheck={false}>
            {form.stdin}
          </textarea>
        </label>
        <button type="submit" class="primary" id="eval-run" disabled={!available}>
          Run
        </button>
      </form>
      {failure && (
        <div class="error" id="eval-failure">
          <p>
            <code>{failure.code}</code>: {failure.message}
          </p>
        </div>
      )}
      {result && (
        <section class="card" id="eval-output">
          <h2>
            Result <span class="muted small">{`exit ${result.exitCode ?? 'none'} · ${ms(result.durationMs)}`}</span>
          </h2>
          <pre id="eval-result">{result.result === undefined || result.result === null ? 'null' : JSON.stringify(result.result, null, 2)}</pre>
          {result.error && (
            <div class="error">
              <p>
                <code>{result.error.code}</code>: {result.error.message}
              </p>
            </div>
          )}
          <Output title="stdout" id="eval-stdout" text={result.stdout} truncated={result.stdoutTruncated} />
          <Output title="stderr" id="eval-stderr" text={result.stderr} truncated={result.stderrTruncated} />
          {result.timings && (
            <p class="muted small">
              {`sandbox ${result.timings.sandbox} · queue ${ms(result.timings.queueMs)} · restore ${ms(result.timings.restoreMs)} · run ${ms(result.timings.runMs)}`}
            </p>
          )}
        </section>
      )}
    </>
  );
}
