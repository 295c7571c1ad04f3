"""Pages a person looks at: the report page (``report``) and the reviewers' UI views (``ui_views``), rendered
from the Jinja2 templates in ``templates/`` with autoescaping. Pure functions over ``api_schemas`` data; no torch."""
