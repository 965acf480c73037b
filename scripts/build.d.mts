// Types for build.mjs (plain JavaScript: it runs before anything is compiled), for the tests that import it.
export declare function staleReason(root?: string): string | undefined;
export declare function nodeVersionProblem(version: string, engines: string): string | undefined;
export declare function build(root?: string): number;
