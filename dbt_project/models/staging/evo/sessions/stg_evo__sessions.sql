with

source as (

    select * from {{ source('evo', 'sessions') }}

),

renamed as (

    select
        ----------  ids
        session_id,
        account_id,
        customer_id,
        endpoint_id,
        answered_by_id,
        queue_member_id,
        ring_queue_id,
        held_by_user_id,
        call_sid,
        conference_sid,
        most_recent_participant_call_sid,

        ----------  strings
        account_name,
        customer_name,
        endpoint_name,
        answered_by_name,
        display_name,
        destination,
        to_address,
        from_address,
        from_name,
        from_phone_number,
        callback_number,
        outcome,
        console_data,
        hold_queue_name,
        created_by,
        last_modified_by,
        extra_fields,

        ----------  enums
        channel,
        direction,
        dial_state,
        call_state,
        queue_state,
        hold_reason,

        ----------  booleans
        cast(ended as boolean) as ended,
        cast(was_missed as boolean) as was_missed,

        ----------  dates and timestamps
        cast(partition_date as date) as partition_date,
        cast(date_created as timestamp with time zone) as created_at,
        cast(date_last_modified as timestamp with time zone) as last_modified_at,
        cast(date_completed as timestamp with time zone) as completed_at,

        ----------  lineage
        sync_id,
        cast(synced_at as timestamp with time zone) as synced_at

    from source

)

select * from renamed
