/**
 * The handler shapes a deploy accepts, named once for every error message
 * (envd's list, runtime/envd/handler-shapes.mjs, says the same).
 */
export const HANDLER_SHAPES_HINT =
  'write `export default async function (request) { ... }` (snapfn), `export default { async fetch(request, env, ctx) { ... } }` (a Workers module, Hono and itty-router apps included) or `export const handler = async (event, context) => { ... }` / `exports.handler = ...` (AWS Lambda), or name the export with --handler file.export';
