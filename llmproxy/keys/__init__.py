"""Who is calling: client keys, their policies, limits and spend."""
