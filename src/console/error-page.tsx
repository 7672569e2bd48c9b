/** What the console shows instead of the gateway's JSON error body. */
export function ErrorPage({ status, code, message }: { status: number; code: string; message: string }) {
  return (
    <section class="card">
      <h1>{status === 404 ? 'Not found' : status === 403 ? 'Forbidden' : status === 401 ? 'Not signed in' : 'Something went wrong'}</h1>
      <p class="error" id="error-message">
        <code>{code}</code>: {message}
      </p>
      <p>
        <a href="/console">Back to the functions</a>
      </p>
    </section>
  );
}
