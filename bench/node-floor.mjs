// The floor: the same handler in a plain node process, no sandbox.
const [bundle] = process.argv.slice(2);
const mod = await import(bundle);
const value = await mod.default(new Request('http://localhost/fn/hello?name=bench'));
process.stdout.write(JSON.stringify(value instanceof Response ? await value.text() : value));
