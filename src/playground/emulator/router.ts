import type { IncomingHttpHeaders } from 'node:http';
import type { ParsedBody } from './multipart.js';

/** What a route handler gets. */
export interface RouteContext {
  method: string;
  route: string;
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  body: ParsedBody;
}

/** What a route handler answers: JSON with a status, or 204 with no body and no content type. */
export type RouteResult = { status: number; json?: unknown };

export type RouteHandler = (ctx: RouteContext) => RouteResult | Promise<RouteResult>;

interface Route {
  method: string;
  template: string;
  segments: string[];
  /** Bot routes need `Authorization: Bot <token>`; interaction and webhook routes need none. */
  auth: boolean;
  handler: RouteHandler;
}

/** Matches `METHOD /path/:param` templates against URL-decoded path segments. */
export class Router {
  readonly #routes: Route[] = [];

  add(method: string, template: string, handler: RouteHandler, options: { auth?: boolean } = {}): void {
    this.#routes.push({ method, template, segments: template.split('/').filter(Boolean), auth: options.auth ?? true, handler });
  }

  /** Finds the route for a decoded path; literal segments win over parameters (so `@me` beats `:userId`). */
  match(method: string, segments: string[]): { route: Route; params: Record<string, string> } | { methodNotAllowed: true } | undefined {
    let pathMatched = false;
    let best: { route: Route; params: Record<string, string>; literals: number } | undefined;
    for (const route of this.#routes) {
      if (route.segments.length !== segments.length) continue;
      const params: Record<string, string> = {};
      let literals = 0;
      const ok = route.segments.every((part, i) => {
        if (part.startsWith(':')) {
          params[part.slice(1)] = segments[i];
          return true;
        }
        literals++;
        return part === segments[i];
      });
      if (!ok) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      if (!best || literals > best.literals) best = { route, params, literals };
    }
    if (best) return { route: best.route, params: best.params };
    return pathMatched ? { methodNotAllowed: true } : undefined;
  }
}
