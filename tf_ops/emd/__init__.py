"""Earth mover's distance: approximate matching (approx_match, match_cost) and the auction assignment."""
