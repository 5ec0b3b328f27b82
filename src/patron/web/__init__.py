"""The web layer: what every server-rendered page shares (the layout, the Jinja2
environment). Pages themselves live with their package (survey links in ``feedback``,
subscription pages in ``campaigns``)."""
