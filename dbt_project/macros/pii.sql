{#- Phone numbers and caller names go through pii() in the marts: under EVO_PII_MODE=hash they
    become keyed hashes (pii_hash is registered by the pipeline.pii dbt-duckdb plugin, which
    holds the key; it never appears in SQL). Switching the mode needs `dbt build --full-refresh`. -#}
{% macro pii(column) -%}
    {%- if env_var('EVO_PII_MODE', 'off') | trim | lower == 'hash' -%}
        pii_hash({{ column }})
    {%- else -%}
        {{ column }}
    {%- endif -%}
{%- endmacro %}
