{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_outdated_days(ref('stg_evo__synced_days'), date_column='partition_date', watermark_column='synced_at') }}"
    )
}}

with

synced_days as (

    select
        partition_date,
        synced_at as last_synced_at
    from {{ ref('stg_evo__synced_days') }}
    {% if is_incremental() %}
    -- The pre_hook has deleted every re-synced day: build the days this table lacks.
    where partition_date not in (select distinct session_date from {{ this }})
    {% endif %}

),

sessions as (

    select
        sessions.*,
        synced_days.last_synced_at
    from {{ ref('stg_evo__sessions') }} as sessions
    inner join synced_days
        on sessions.partition_date = synced_days.partition_date

),

members as (

    select
        session_id,
        count(*) as member_count
    from {{ ref('stg_evo__session_members') }}
    where partition_date in (select partition_date from synced_days)
    group by session_id

),

log_entries as (

    select
        session_id,
        count(*) as log_entry_count
    from {{ ref('stg_evo__session_log') }}
    where partition_date in (select partition_date from synced_days)
    group by session_id

),

top_customers as (

    select
        session_id,
        customer_id,
        customer_name
    from {{ ref('stg_evo__session_breadcrumbs') }}
    where
        breadcrumb_position = 0
        and partition_date in (select partition_date from synced_days)

),

final as (

    select
        sessions.session_id,
        sessions.partition_date as session_date,
        sessions.created_at as started_at,
        sessions.completed_at,
        case
            when sessions.completed_at >= sessions.created_at
                then {{ seconds_between('sessions.created_at', 'sessions.completed_at') }}
        end as duration_seconds,
        sessions.was_missed,
        sessions.ended,
        sessions.channel,
        sessions.direction,
        sessions.account_id,
        sessions.account_name,
        sessions.customer_id,
        sessions.customer_name,
        -- Resellers roll up their customers: the top of the breadcrumb trail, else (empty
        -- trail) the session's own customer.
        case
            when top_customers.customer_id is not null then top_customers.customer_id
            else sessions.customer_id
        end as top_customer_id,
        case
            when top_customers.customer_id is not null then top_customers.customer_name
            else sessions.customer_name
        end as top_customer_name,
        sessions.endpoint_id,
        sessions.endpoint_name,
        sessions.answered_by_id,
        sessions.answered_by_name,
        sessions.outcome,
        {{ pii('sessions.from_address') }} as from_address,
        {{ pii('sessions.from_name') }} as from_name,
        {{ pii('sessions.to_address') }} as to_address,
        coalesce(members.member_count, 0) as member_count,
        coalesce(log_entries.log_entry_count, 0) as log_entry_count,
        cast(extract(hour from {{ local_timestamp('sessions.created_at') }}) as integer) as hour_of_day,
        cast(extract(isodow from {{ local_timestamp('sessions.created_at') }}) as integer) as day_of_week,
        sessions.sync_id,
        sessions.synced_at,
        sessions.last_synced_at

    from sessions
    left join members
        on sessions.session_id = members.session_id
    left join log_entries
        on sessions.session_id = log_entries.session_id
    left join top_customers
        on sessions.session_id = top_customers.session_id

)

select * from final
