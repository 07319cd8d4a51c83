"""Ways to run shoal clusters: scheduler files, and cluster managers."""
