{{
    config(
        materialized='incremental',
        incremental_strategy='delete+insert',
        unique_key='session_date',
        on_schema_change='append_new_columns',
        pre_hook="{{ delete_outdated_days(ref('fct_sessions')) }}"
    )
}}

with

voice_calls as (

    select * from {{ ref('fct_sessions') }}
    where
        channel = 'Voice'
        and endpoint_id is not null
        {% if is_incremental() %}
        and session_date not in (select distinct session_date from {{ this }})
        {% endif %}

),

classified as (

    select
        session_date,
        endpoint_id,
        endpoint_name,
        started_at,
        last_synced_at,
        direction = 'Incoming' as is_incoming,
        direction = 'Outgoing' as is_outgoing,
        direction = 'Incoming' and was_missed is true as is_missed_incoming,
        -- Only answered incoming calls carry a duration into the averages.
        case
            when direction = 'Incoming' and was_missed is not true then duration_seconds
        end as answered_duration_seconds
    from voice_calls

),

latest_names as (

    -- An endpoint can be renamed within a day: report the name of its latest call.
    select
        session_date,
        endpoint_id,
        endpoint_name,
        row_number() over (
            partition by session_date, endpoint_id
            order by started_at desc, endpoint_name
        ) as recency
    from classified

),

daily as (

    select
        session_date,
        endpoint_id,
        count(*) as total_calls,
        count(case when is_incoming then 1 end) as incoming_calls,
        count(case when is_outgoing then 1 end) as outgoing_calls,
        count(case when is_missed_incoming then 1 end) as missed_calls,
        count(answered_duration_seconds) as answered_calls,
        avg(answered_duration_seconds) as avg_duration_seconds,
        quantile_cont(answered_duration_seconds, 0.5) as median_duration_seconds,
        quantile_cont(answered_duration_seconds, 0.9) as p90_duration_seconds,
        max(last_synced_at) as last_synced_at
    from classified
    group by session_date, endpoint_id

),

final as (

    select
        daily.session_date,
        daily.endpoint_id,
        latest_names.endpoint_name,
        daily.total_calls,
        daily.incoming_calls,
        daily.outgoing_calls,
        daily.missed_calls,
        {{ safe_divide('daily.missed_calls', 'daily.incoming_calls') }} as missed_call_rate,
        daily.answered_calls,
        daily.avg_duration_seconds,
        daily.median_duration_seconds,
        daily.p90_duration_seconds,
        daily.last_synced_at
    from daily
    inner join latest_names
        on
            daily.session_date = latest_names.session_date
            and daily.endpoint_id = latest_names.endpoint_id
            and latest_names.recency = 1

)

select * from final
