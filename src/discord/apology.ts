/** What a member reads when a handler fails for a reason that is not theirs (the error itself is logged). */
export const APOLOGY = 'Sorry, something went wrong on my side. It has been logged; please try again in a moment.';
