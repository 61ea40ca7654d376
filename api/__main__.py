"""`python -m api`: serve the API on PAYMENTS_API_HOST:PAYMENTS_API_PORT."""

from api.app import main

main()
