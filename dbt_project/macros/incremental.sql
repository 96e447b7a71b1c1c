{#-
    Day-by-day incremental loading. Every incremental model is keyed on `session_date` and
    stores `last_synced_at`: the raw.synced_days.synced_at of the sync that produced the
    day's rows. An incremental run then
      1. (pre_hook, this macro) deletes every day whose stored watermark differs from the
         upstream's watermark for that day, or which the upstream no longer has at all
         (a day re-synced to zero sessions);
      2. (model body) inserts every day of its input that the table does not hold.
    So a run touches only re-synced days, and a `--full-refresh` gives the same rows.
-#}
{% macro delete_outdated_days(upstream, date_column='session_date', watermark_column='last_synced_at') -%}
{%- if is_incremental() -%}
delete from {{ this }}
where session_date in (
    select built_days.session_date
    from (
        select session_date, max(last_synced_at) as last_synced_at
        from {{ this }}
        group by session_date
    ) as built_days
    left join (
        select {{ date_column }} as session_date, max({{ watermark_column }}) as last_synced_at
        from {{ upstream }}
        group by {{ date_column }}
    ) as upstream_days
        on upstream_days.session_date = built_days.session_date
    where upstream_days.last_synced_at is distinct from built_days.last_synced_at
)
{%- endif -%}
{%- endmacro %}
