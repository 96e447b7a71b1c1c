{#- Use custom schema names verbatim (`staging`, `marts`) instead of dbt's default
    `<target schema>_<custom schema>`, so the warehouse has exactly raw / staging / marts. -#}
{% macro generate_schema_name(custom_schema_name, node) -%}
    {%- if custom_schema_name is none -%}
        {{ target.schema }}
    {%- else -%}
        {{ custom_schema_name | trim }}
    {%- endif -%}
{%- endmacro %}
