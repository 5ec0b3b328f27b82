"""Customer service: multi-channel tickets, SLAs, complaint grading, service recovery."""
