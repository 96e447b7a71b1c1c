{#-
    Tests on the day-partitioned staging models (models/staging/evo/sessions, configured with
    `where: "__days_to_test__"` in dbt_project.yml) check only the days this build is about
    to (re)build: the days of raw.synced_days whose sync fct_sessions does not hold yet. A
    day's rows change only when it is re-synced, so the daily build's tests cost what its
    days cost, not what the history costs. Everything is tested when fct_sessions does not
    exist yet, on `--full-refresh`, or with `--vars '{evo_test_all_days: true}'`.
-#}
{% macro evo_days_to_test() -%}
    {%- set built = adapter.get_relation(
        database=target.database,
        schema=generate_schema_name('marts', none),
        identifier='fct_sessions'
    ) -%}
    {%- if built is none or flags.FULL_REFRESH or var('evo_test_all_days', false) -%}
        true
    {%- else -%}
        partition_date in (
            select synced.partition_date
            from {{ source('evo', 'synced_days') }} as synced
            where not exists (
                select 1
                from {{ built }} as built_days
                where built_days.session_date = synced.partition_date
                    and built_days.last_synced_at = synced.synced_at
            )
        )
    {%- endif -%}
{%- endmacro %}


{#- dbt's own get_where_subquery, with the `__days_to_test__` placeholder filled in. -#}
{% macro get_where_subquery(relation) -%}
    {%- set where = config.get('where') -%}
    {%- if where -%}
        {%- if '__days_to_test__' in where -%}
            {%- set where = where | replace('__days_to_test__', evo_days_to_test()) -%}
        {%- endif -%}
        {%- set filtered -%}
            (select * from {{ relation }} where {{ where }}) dbt_subquery
        {%- endset -%}
        {%- do return(filtered) -%}
    {%- else -%}
        {%- do return(relation) -%}
    {%- endif -%}
{%- endmacro %}
