"""Human review of uncertain labels.

page.py           the ReviewPage construct: Cognito sign-in, the HTTP API and its Lambda, the backlog probe
site.py           the page's hosting: private bucket, CloudFront, security headers, deployment
parts.py          what is not a resource of the construct: the API's code, the WAF, the dashboard widgets
history_table.py  the review history table's keys as plain data (CDK-free: the local review page builds it)
"""
