// Where a PostgreSQL server is, for messages: no driver needed (the CLI names the store before it opens it).

/** Host, port and database of a connection URL, for messages. */
export function describeServer(url: string): string {
  try {
    const parsed = new URL(url);
    return `${parsed.hostname || 'localhost'}:${parsed.port || '5432'}${parsed.pathname || '/'}`;
  } catch {
    return 'the configured server';
  }
}
