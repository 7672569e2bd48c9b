/** The sign-in form: the key goes in a POST body, never in a URL, and comes back as a session cookie. */
export function LoginPage({ next, failed }: { next: string; failed?: boolean }) {
  return (
    <section class="card login">
      <h1>Sign in</h1>
      <p class="muted">This gateway has an API key (SNAPFN_API_KEY). Enter it to open the console; the browser keeps a session cookie for 12 hours, not the key.</p>
      {failed && (
        <p class="error" id="login-error" role="alert">
          That is not the key.
        </p>
      )}
      <form method="post" action="/console/login">
        <input type="hidden" name="next" value={next} />
        <label class="block">
          API key
          <input type="password" name="key" id="login-key" autocomplete="current-password" required autofocus />
        </label>
        <button type="submit" class="primary" id="login-submit">
          Sign in
        </button>
      </form>
    </section>
  );
}
